"""Pulumi ComponentResources that render a stack spec into Docker resources."""

from components.app_pool import AppPool, AppPoolArgs
from components.blue_green_service import BlueGreenService, BlueGreenServiceArgs
from components.database import Database, DatabaseArgs
from components.proxy import Proxy, ProxyArgs

__all__ = [
    "AppPool",
    "AppPoolArgs",
    "BlueGreenService",
    "BlueGreenServiceArgs",
    "Database",
    "DatabaseArgs",
    "Proxy",
    "ProxyArgs",
]
