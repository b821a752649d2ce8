"""Slack front end: a thin adapter on the conversation layer (bot/chat) over Bolt's
Socket Mode. bot.py assembles it; bot/fronts.py runs it."""
