"""A shared counter that hands out tasks to the threads of one parallel launch.

A ``prange`` splits its iterations among the threads in equal blocks fixed at the launch:
on a shared machine a thread that the OS schedules late holds up the whole launch with its
block. Here each thread instead takes the next task from an atomic counter until none is
left, so a thread that starts late finds the work done by the others.

Which thread runs a task never changes its result: each task writes only its own outputs.
"""

from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["fetch_add", "next_task", "claim_all"]


@intrinsic
def fetch_add(typingctx, counter, value):
    """Atomically ``old = counter[0]; counter[0] += value``; returns old (int64 arrays)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1):
        return None
    if not isinstance(value, types.Integer):
        return None
    sig = types.int64(counter, value)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [context.get_constant(types.intp, 0)])
        increment = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", pointer, increment, "monotonic")

    return sig, codegen


@njit(inline="always")
def next_task(queue):
    """The next task of ``queue`` (an int64 array of one element, 0 before the launch)."""
    return fetch_add(queue, 1)


@njit(cache=True, parallel=True)
def claim_all(queue, n_workers, taken, owner, spin):
    """Every task t < len(taken) through the queue: taken[t] += 1 and owner[t] <- the
    worker that took it, each task first busy for ``spin`` iterations (the queue's own test:
    no task lost or handed out twice, and the work shared)."""
    for worker in prange(n_workers):
        while True:
            task = next_task(queue)
            if task >= len(taken):
                break
            total = 0.0
            for k in range(spin):
                total += k * 1e-9
            taken[task] += 1 + int(total < 0)
            owner[task] = worker
