"""Worker processes: load diffusers pipelines once, render RQ jobs, store images.

Never imports FastAPI or the gateway.
"""
