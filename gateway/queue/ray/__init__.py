"""Ray backend: the gateway hands parts to a pool of Ray actors (``embedfleet.worker.ray_actor``).

``connect`` joins Ray (or starts it on 127.0.0.1), ``queue`` is the durable queue in Redis,
``pool`` keeps the actors, and ``dispatcher`` is the thread between them and the ``Dispatcher``.

Ray has no durable broker, so the queue is in Redis, like every other piece of job state, behind
the job store's queue methods (keys ``<prefix>ray:*``):

* ``dispatch_parts`` appends ``[job_id, part]`` to ``<prefix>ray:pending``; the caller then marks
  the parts dispatched, exactly as for Celery once the broker holds them, so the gateway's recovery
  loop keeps its meaning (``pending`` = never reached the list).
* One dispatcher thread moves items with ``LMOVE`` into this dispatcher's own
  ``<prefix>ray:inflight:<id>`` list and calls an actor. An item leaves that list only when its part
  has an outcome (done, failed, skipped) or is dropped because the job is no longer active. The
  list is guarded by a lease key the thread refreshes; when a gateway dies, its lease expires and
  any other (or the restarted) gateway moves the orphaned items back to the head of the pending
  list. A part that ran half-way is then started again: the runner's ``start_part`` sees
  ``running`` (RETRY) and its Milvus upserts overwrite, so nothing is lost and nothing is written
  twice.
* Backpressure: at most ``ray_pool_size + ray_max_queued_chunks`` items are out of the pending list
  at any time (running, queued on an actor, or waiting for a retry). The rest stay in Redis, the
  job stays QUEUED with its progress visible, and the gateway's memory does not grow with the job.

Failures, decided in the dispatcher because only it sees them (the job rules stay in the runner):

* The runner returns ``retry`` (``RetryPart``, a transient error): resubmitted after
  ``embedfleet.tasks.retry_delay``, the backoff Celery's adapter uses too, with ``attempt + 1``.
* The actor died (``RayActorError``: process killed, OOM, node lost): the actor is replaced by a
  fresh one and the part goes at once to the least-loaded live actor. The attempt counts only if
  the part had started (its state is ``running``) or the actor could not even be built; parts
  that were merely queued behind the dead one keep their attempt.
* The actor method raised (``RayTaskError``, e.g. Redis unreachable before the runner's own
  error handling): retried with backoff like ``retry``.
* Past ``max_chunk_attempts`` the part is handed to an actor's ``fail_chunk`` (the runner's fail
  path), so the job ends FAILED with the part in ``failed_chunks`` instead of hanging. When no actor
  can be built (every one dies in ``__init__``, e.g. its model cannot load), or the actors could not
  record the failure in ``max_chunk_attempts`` tries, the dispatcher records it itself through the
  job store (it needs no model), with the cause: "the Ray workers could not start: ...".
* Redis or Ray failing under the dispatcher itself (checking a job, calling an actor, removing a
  finished item) never drops a part: the step is tried again a second later with the part still in
  the in-flight list, and a part gives back its place in the backpressure count exactly once, when
  it leaves that list.

Ray's own ``max_restarts``/``max_task_retries`` are off: Ray would re-run tasks without telling the
runner the attempt, and could not apply the attempt limit or report the failure on the job.

Interactive requests skip the queue: each actor has two concurrency groups of one thread each,
``bulk`` (parts, in order) and ``interactive``. An Embed is sent straight to an actor's interactive
thread, so it never waits behind queued parts, only for the forward pass in progress (the
encoder's lock serialises passes, which on a saturated device is what one wants anyway). This was
chosen over a dedicated interactive actor, which would hold a second copy of every model and
compete with the bulk actors for the same cores.

Nothing here imports torch, Ray or worker code at import time: Ray is imported when a dispatcher
connects (after the loopback setting), and the actor class when the pool is built; the actor's
heavy imports happen inside the actor process.
"""
