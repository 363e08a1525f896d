"""The gateway's aiohttp web app: health, metrics, the text console and (from teammates) voice and media routes."""
