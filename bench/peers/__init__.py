"""Neuroserve measured against the servers users would pick instead (issue 8): see README.md."""
