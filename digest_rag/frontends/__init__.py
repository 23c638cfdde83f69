"""What people run: the CLI, the shell, the HTTP server, the MCP server, the live index, terminal display."""
