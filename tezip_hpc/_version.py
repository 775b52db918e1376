"""The tool's version, in a module that imports nothing: any module may import it (no import
loop through the package root), and setup.cfg reads it without importing the package."""

__version__ = "0.1.0"
