"""The terminal front end: `wanbot console`, `wanbot generate` and `wanbot doctor`."""
