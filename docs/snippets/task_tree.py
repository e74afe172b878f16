import nursery_io
from nursery_io import lowlevel


def describe_awaits(task: lowlevel.Task) -> str:
    """Where ``task`` is suspended: its own calls (outermost first) down to the first
    nursery_io function, whose insides are no help here."""
    calls = []
    for frame, lineno in task.iter_await_frames():
        name = frame.f_code.co_name
        if frame.f_globals.get("__name__", "").startswith("nursery_io"):
            calls.append(f"nursery_io ({name})")
            break
        calls.append(f"{name}() line {lineno}")
    return " > ".join(calls)


def print_task_tree(task: lowlevel.Task, indent: str = "") -> None:
    """Print ``task``, where it waits, and then its children (the tasks of its nurseries)."""
    print(f"{indent}{task.name}: {describe_awaits(task)}")
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            print_task_tree(child, indent + "    ")


async def wait_for_reply(receive: nursery_io.MemoryReceiveChannel[str]) -> None:
    await receive.receive()  # nobody ever sends: this task hangs


async def wait_for_lock(lock: nursery_io.Lock) -> None:
    async with lock:  # someone else holds it: this task hangs too
        pass


async def main() -> None:
    _send, receive = nursery_io.open_memory_channel[str](0)  # kept open, never used
    lock = nursery_io.Lock()
    await lock.acquire()
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(wait_for_reply, receive)
        nursery.start_soon(wait_for_lock, lock)
        await nursery_io.sleep(0.1)  # let them get stuck

        statistics = lowlevel.current_statistics()
        print(f"{statistics.tasks_living} tasks, {statistics.tasks_runnable} runnable")
        print_task_tree(lowlevel.current_root_task())
        nursery.cancel_scope.cancel()  # a real program would be stuck here


if __name__ == "__main__":
    nursery_io.run(main)
