import pytest, time
from tests.reliability.world import open_world
from tests.reliability.flows import imagine, settled_job
from tests.reliability.audit import result_messages
from tests.fakes.providers import make_png
from tests.test_abuse import _modal_submit
from tests.reliability.audit import private_answer

import tests.reliability.world as W
EVENTS = []
_os, _oe, _sub, _fin = W.HttpCounter._start, W.HttpCounter._end, W.CountingExecutor.submit, W.CountingExecutor._finished
async def _st(self, *args):
    EVENTS.append(("http+", time.monotonic(), str(args[2].url)[:80])); await _os(self)
async def _en(self, *args):
    EVENTS.append(("http-", time.monotonic(), "")); await _oe(self)
def _sb(self, fn, *a, **k):
    EVENTS.append(("exec+", time.monotonic(), getattr(fn, "__name__", str(fn))[:60])); return _sub(self, fn, *a, **k)
def _fn(self):
    EVENTS.append(("exec-", time.monotonic(), "")); _fin(self)
W.HttpCounter._start = _st; W.HttpCounter._end = _en; W.CountingExecutor.submit = _sb; W.CountingExecutor._finished = _fn

@pytest.mark.parametrize("n", range(60))
async def test_dbg(n, tmp_path, clock):
    async with open_world(tmp_path, clock) as world:
        fake = world.fake
        troll = fake.add_user("troll")
        before = await imagine(world, troll)
        job = await world.drive(lambda: settled_job(world, before))
        [result] = result_messages(fake, job.id)
        block = await fake.slash("quota", fake.owner, {"user": troll, "reason": "spam"}, subcommand="block")
        await fake.wait_callback(block)
        await world.drive(lambda: world.rows("SELECT * FROM blocks"))
        photo = fake.upload(make_png(512, 512), "cat.png")
        posted = await fake.post_user_message(troll, "look", attachments=[photo])
        edit = await fake.click(troll, result["id"], f"wanbot:edit:{job.id}:0")
        await fake.wait_callback(edit)
        events = EVENTS
        events.clear()
        a = await _modal_submit(world, edit)
        t0 = time.monotonic()
        await world.settle()
        t1 = time.monotonic()
        text = private_answer(fake, a)
        if text is None:
            print("\nEDIT modal unanswered after settle", t1 - t0, "busy", world.busy, fake.in_flight, world.store_busy.count, world.http.in_flight, world.executor.in_flight)
            for r in fake.requests:
                if a.token in r.path or a.id in r.path:
                    print("  ", r.method, r.path[:60], r.status, r.clock_at)
            print("clock", world.clock.monotonic(), "t0", t0, "t1", t1)
            for e in events: print("   ev", e[0], round(e[1]-t0, 4), e[2])
            await world.settle()
            import asyncio
            for _ in range(100): await asyncio.sleep(0.01)
            print("later:", private_answer(fake, a))
            for r in fake.requests:
                if a.token in r.path or a.id in r.path:
                    print("  ", r.method, r.path[:60], r.status, round(r.real_at - t0, 4))
            for e in events: print("   ev", e[0], round(e[1]-t0, 4), e[2])
            assert False
