"""Stream side: the light contract modules (schema, wire, settings, alert, errors) and the
Faust workers. Importing ``stream`` itself never imports Faust or numba."""
__version__ = "0.1.0"
