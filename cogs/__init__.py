"""Thin Discord command handlers (extensions), loaded by the bot class."""
