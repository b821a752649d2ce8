"""Slack front end (in progress): the pieces that do not need the chat layer yet."""
