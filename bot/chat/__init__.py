"""The conversation layer: every use case, card and sentence once, for every chat
front end (Discord, Slack, the console). Imports only `bot.core`; each front end
implements `ChatSurface` and renders `Card`s."""
