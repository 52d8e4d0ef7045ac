"""Training: one loop on Accelerate (:mod:`protege.train.loop`), batch sources and objectives that plug into it."""
