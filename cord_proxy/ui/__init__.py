"""The web page: playground, trace viewer and teacher board, served at ``/ui``."""

from cord_proxy.ui.routes import add_ui_routes

__all__ = ["add_ui_routes"]
