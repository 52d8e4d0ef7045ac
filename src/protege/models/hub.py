"""Publishing a trained model folder to the Hugging Face hub.

:func:`push` creates the repository (if needed) and uploads the folder in one commit through
``huggingface_hub.HfApi``'s ``create_repo`` and ``upload_folder``. ``api`` is the seam: tests pass a local stand-in
with the same two methods, so nothing here is tested against the network. The token is read from the named
environment variable (never from the recipe or the run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from protege.core.errors import UserError


def push(folder: Path, repo: str, *, private: bool = False, token_env: str = "HF_TOKEN", api: Optional[Any] = None,
         message: str = "Upload a student distilled with protege") -> str:
    """Upload ``folder`` to the hub repository ``repo`` (``owner/name``); returns the commit's URL."""
    if "/" not in repo or repo.count("/") > 1:
        raise UserError(f"--repo {repo!r}: give owner/name, e.g. my-org/ticket-classifier")
    if not folder.is_dir():
        raise UserError(f"not found: {folder.resolve()} (the model folder to push)", code="not_found")
    if api is None:
        from huggingface_hub import HfApi

        token = os.environ.get(token_env)
        if not token:
            raise UserError(f"pushing needs a hub token in ${token_env} (a write token from your hub settings)")
        api = HfApi(token=token)
    api.create_repo(repo_id=repo, private=private, exist_ok=True, repo_type="model")
    result = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model", commit_message=message)
    return str(getattr(result, "commit_url", result))
