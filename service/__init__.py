"""The FastAPI gateway: validates, enqueues on Redis/RQ, waits, answers in OpenAI's wire format.

Never imports torch, diffusers or the workers.
"""
