"""A small real MCP server (official SDK, stdio) for the tests: a weather service with a slow and
a failing tool. Run: python tests/mcp_server_example.py (it speaks MCP on stdin/stdout)."""

from __future__ import annotations

import logging
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

FORECASTS = {"oslo": ("snow", -3), "lisbon": ("sunny", 24)}

server = MCPServer("weather")


@server.tool()
def get_forecast(city: str, days: int = 1) -> dict:
    """Weather forecast for a city for the next days."""
    sky, temp = FORECASTS.get(city.lower(), ("unknown", 0))
    if sky == "unknown":
        raise ToolError(f"no forecast for {city}")
    return {"city": city, "days": days, "sky": sky, "celsius": temp}


@server.tool()
def slow_alerts(region: str) -> str:
    """Weather alerts for a region (slow)."""
    time.sleep(3)
    return f"no alerts for {region}"


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)  # tool errors are results, not stderr noise
    server.run("stdio")
