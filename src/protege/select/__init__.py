"""Choosing what the student learns from: selection strategies and the select stage."""
