"""The package version, apart from the package root so that file writers can import it."""

__version__ = "0.1.0"
