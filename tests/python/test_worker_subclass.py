"""Subclass-style workers (issue 15): hook methods overridden on a Worker subclass run as hooks,
beside decorator hooks in a documented order; health_check feeds health(); an override that
cannot work is an error when the class is created."""
import asyncio

import pytest

import herald

STEPS = [{"name": "s", "publishes_events": [{"name": "s.done"}]}]


def make(cls, name="sub"):
    return cls(name=name, steps=STEPS, publishers=herald.PublisherRegistry(),
               subscribers=herald.SubscriberRegistry())


def test_overridden_hook_methods_run_in_order_with_decorator_hooks_and_super_calls_work():
    order = []

    class MyWorker(herald.Worker):
        async def on_startup(self):
            await super().on_startup()
            order.append(("startup", self.state.value, self.config["name"]))

        def on_shutdown(self):
            super().on_shutdown()
            order.append("shutdown")

        def on_success(self, completion):
            super().on_success(completion)
            order.append(("success", completion.step_name))

        def on_error(self, completion, error):
            super().on_error(completion, error)
            order.append(("error", completion.step_name))

    worker = make(MyWorker)

    @worker.on_startup
    def decorated_startup():
        order.append("decorated startup")

    @worker.on_shutdown
    def decorated_shutdown():
        order.append("decorated shutdown")

    worker.start()
    assert worker.complete_step({"step_name": "s", "success": True})
    assert worker.complete_step({"step_name": "unknown", "success": True})
    assert worker.drain(10)
    worker.stop()
    # The method is registered first: it starts first and (reverse order) shuts down last.
    assert order == [("startup", "STARTING", "sub"), "decorated startup", ("success", "s"),
                     ("error", "unknown"), "decorated shutdown", "shutdown"]


def test_a_subclass_of_a_subclass_chains_through_super():
    order = []

    class Base(herald.Worker):
        def on_startup(self):
            order.append("base")

    class Child(Base):
        async def on_startup(self):
            order.append("child")
            super().on_startup()

    worker = make(Child)
    worker.start()
    worker.stop()
    assert order == ["child", "base"]


@pytest.mark.parametrize("is_async", [False, True])
def test_health_check_feeds_health(is_async):
    answer = {"ok": True}

    if is_async:
        class Checked(herald.Worker):
            async def health_check(self):
                await asyncio.sleep(0)
                return answer["ok"]
    else:
        class Checked(herald.Worker):
            def health_check(self):
                return answer["ok"]

    worker = make(Checked)
    worker.start()
    try:
        assert worker.health()["healthy"] is True
        answer["ok"] = False
        report = worker.health()
        assert report["healthy"] is False and report["health_check"] is False
    finally:
        worker.stop()


def test_a_health_check_that_raises_makes_the_worker_unhealthy():
    class Broken(herald.Worker):
        def health_check(self):
            raise RuntimeError("database unreachable")

    worker = make(Broken)
    worker.start()
    try:
        assert worker.health()["healthy"] is False
    finally:
        worker.stop()


def test_overrides_that_cannot_work_fail_at_class_creation():
    with pytest.raises(TypeError, match=r"on_success must take \(self, completion\)"):
        class WrongArity(herald.Worker):
            def on_success(self):
                pass

    with pytest.raises(TypeError, match="on_state_change: this hook has no method form"):
        class NoMethodForm(herald.Worker):
            def on_state_change(self, old, new):
                pass

    with pytest.raises(TypeError, match="on_startup must be a plain method"):
        class NotAFunction(herald.Worker):
            on_startup = 42


def test_logger_and_config_are_there_for_subclasses():
    seen = {}

    class MyWorker(herald.Worker):
        def on_startup(self):
            seen["logger"] = self.logger.name
            seen["config"] = self.config["name"]

    worker = make(MyWorker, name="cfg")
    worker.start()
    worker.stop()
    assert seen == {"logger": "herald.worker.cfg", "config": "cfg"}
    assert worker.config()["name"] == "cfg"  # still callable, as before
