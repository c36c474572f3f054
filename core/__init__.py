"""The contract shared by the gateway and the workers: schemas, jobs, errors, settings, storage.

Imports neither torch nor FastAPI.
"""
