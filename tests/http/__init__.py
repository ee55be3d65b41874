"""Tests of the front-door HTTP server (obscura/http)."""
