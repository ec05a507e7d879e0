"""Deployment and monitoring tests: Docker files, compose, Prometheus, Grafana (no Docker engine)."""
