"""Where Discord lives and what to say when it refuses the bot's token: one copy for
`run`, `invite` and `doctor` (plain strings, importable without discord.py)."""

DISCORD_API = "https://discord.com/api/v10"
PORTAL = "https://discord.com/developers/applications"
TOKEN_REJECTED = "Discord rejected DISCORD_TOKEN (401 Unauthorized)"
RESET_TOKEN = (
    f"reset it at {PORTAL} -> your app -> Bot -> Reset Token, "
    "and put the new one in .env as DISCORD_TOKEN=..."
)
