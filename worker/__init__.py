"""Workers: load models once per process, embed chunks, write vectors to Milvus or the result store.

The job logic is plain Python (``runner``); ``celery_worker`` and ``ray_actor`` are thin adapters.
"""
