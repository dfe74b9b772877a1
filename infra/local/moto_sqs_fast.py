#!/usr/bin/env python3
"""moto_server with moto's SQS hot paths made cheap (performance-only monkeypatch).

Usage (same arguments as `moto_server`; run it with the stack venv's python):

    "$VENV/bin/python" infra/local/moto_sqs_fast.py -H 127.0.0.1 -p "$AWS_PORT"

Why (1), PATCH 1-7: moto 5.2.5's SQS does work proportional to the queue depth on
every request (moto/sqs/models.py):
  * SendMessage(Batch): `queue.attributes.get("ContentBasedDeduplication")` (l.876,
    and l.562/812/819 for FIFO) builds *all* queue attributes, including
    ApproximateNumberOfMessages / ...NotVisible / ...Delayed (l.496-506): three
    full scans of the queue, each calling a slow datetime-based clock per message
    (Message.visible/.delayed, l.188-200). SendMessageBatch pays it 10 times.
  * ReceiveMessage: `queue.messages` (l.548, used at l.1010) scans and clock-checks
    the whole queue; `pending_message_groups` is rebuilt and deep-copied (l.1001,
    l.1018) although only FIFO queues use it; and per *received* message,
    is_message_valid_based_on_retention_period (l.1039/1279) calls
    get_queue_attributes, which evaluates queue.attributes 3 times (l.788-790)
    = 9 more full scans per message.
  * Long-poll waits: the wake-up predicate `lambda: self.messages` (l.635) scans
    the whole queue on every wake-up (every send notifies all waiters).
  * DeleteMessage(Batch): Queue.delete_message (l.613-631) scans the queue twice
    per receipt handle, building a list of handles per message.
  * ChangeMessageVisibility(Batch): linear scan by receipt handle (l.1093).
  * GetQueueAttributes: queue.attributes evaluated 1 + 2*len(names) times
    (l.786-790), each evaluation = 3 clock-per-message scans.

Why (2), PATCH 8-14 (in moto_fast_request.py, beside this file): with those gone, a request still cost 3.5-6 ms of CPU in the
one Python process (GIL) - SendMessageBatch(10) 3.7 ms, ReceiveMessage(10) 6.1 ms,
DeleteMessageBatch(10) 3.5 ms, ~245 req/s on a mix - mostly outside the queue model
(py-spy):
  * ~20%: finding the backend: for every request moto lists its own package
    directory and stat()s ~200 entries, then tries ~180 URL regexes (PATCH 8);
  * ~15-25%: moto's generic response serializer, ~8 Python calls per output member
    to find a dict key (~1.2 ms for a receive of 10 messages) (PATCH 10);
  * receipt handles / request ids drawn with one random.choice() per character,
    ~1,900 calls per receive of 10 (PATCH 12); inspect.getmembers() of the response
    class per request (PATCH 9); a new class created per request by Flask's debug
    helper (PATCH 14); a regex over every JSON body (PATCH 11); a datetime-based
    clock read ~17 times per request (PATCH 13); deepcopy's per-value dispatch for
    each received message and all queue attributes built for the retention check
    of each received message (PATCH 5 (d), PATCH 3).
Measured on this 2-core machine (server CPU from /proc/<pid>/stat, 4 client
processes, AWS JSON 1.0 as aws-sdk-rust sends it, a queue of 1,000-5,000 messages,
medians of 4 runs, each run +-15%): SendMessageBatch(10) 3.7 -> 1.8 ms,
ReceiveMessage(10) 6.1 -> 1.9 ms, DeleteMessageBatch(10) 3.5 -> 1.4 ms; a
send/receive/delete mix 4.1 -> 1.6 ms per request (~245 -> ~590 req/s). Stock moto:
13 ms per request on that mix with a near-empty queue, 0.3-1 s per send/receive at a
depth of 1,000. What is left is mostly werkzeug's development server (a new
connection and thread per request, as it answers "Connection: close"; its access
log line), Flask, and moto's request parsing, which are not touched.

Why (3), PATCH 15 and the web server: under the bench's load (1,000 msg/s, 10-20
long-polling receivers) every send woke every waiting receiver (notify_all per
message), and werkzeug's development server paid a new connection, thread and
access-log line per request. A send now wakes one waiter per message (PATCH 15), and
main() serves moto's own WSGI application with waitress (keep-alive, a thread pool;
serve_waitress, -H/-p only). MOTO_WSGI=werkzeug runs moto.server.main instead.

What this file changes (nothing else): see the PATCH sections below. Semantics are
kept: same message order, visibility/delay checks, receive counts, redrive to the
DLQ, FIFO handling, error types, attribute values, response bodies (same bytes),
status codes and headers; with moto's random generator seeded (moto-api seed), even
the same message ids, receipt handles and request ids. The only differences are
that one clock reading is taken per scan instead of one (or four) per message, and
that a delete removes the message from the queue's list in place instead of
rebinding a rebuilt list (which also closes a window in which a concurrent send
could be lost), and that of several concurrent long-poll receivers, fewer wake up
early to share a burst (each still re-checks within 1 s, as in moto).

Safety: the patch is applied only if moto.__version__ == "5.2.5" *and* the source
of every moto function it replaces or re-implements hashes to what it was written
against (and the random-string rewrite reproduces random.choice() draw for draw on
this Python); otherwise a warning goes to stderr and moto runs unpatched. Flask is
not pinned by moto[server], so a Flask whose helper differs only drops PATCH 14.
MOTO_SQS_FAST=0 in the environment also runs moto unpatched (for A/B checks).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
import weakref
from copy import deepcopy

# Beside this file (the script's directory is first on sys.path).
from moto_fast_request import (
    REQUEST_PATH_SOURCE_HASHES,
    build_request_path_patches,
    request_path_targets,
    source_hash as _source_hash,
    warn as _warn,
)

EXPECTED_MOTO_VERSION = "5.2.5"

# sha256[:16] of inspect.getsource() of each moto function replaced, re-implemented
# or emulated here, as shipped in moto 5.2.5. Any drift -> run unpatched.
EXPECTED_SOURCE_HASHES = {
    "Queue.attributes": "40cb990b121628d5",
    "Queue.messages": "03a531dbcbcf9aee",
    "Queue.approximate_number_of_messages": "d357a9506a56d2f8",
    "Queue.approximate_number_of_messages_delayed": "c3c1dadb0c42ed5f",
    "Queue.approximate_number_of_messages_not_visible": "5dbecc4dda174358",
    "Queue.add_message": "f27c9231c1f20433",
    "Queue.delete_message": "fa6fd5b9bd2cafb4",
    "Queue.wait_for_messages": "58432562ccf2e13e",
    "Message.mark_received": "98e7ec115c7fcb9f",
    "Message.visible": "5129b573308de62a",
    "Message.delayed": "e2fd48abf582683a",
    "SQSBackend.send_message": "bf161af09a9e6b86",
    "SQSBackend._validate_message": "39cb57c19e596164",
    "SQSBackend.receive_message": "065f3e5e7d214408",
    "SQSBackend.change_message_visibility": "f0e9df5f66627114",
    "SQSBackend.get_queue_attributes": "58417223da457b5a",
    "camelcase_to_underscores": "084cdc5bab92db95",
    **REQUEST_PATH_SOURCE_HASHES,
}


_COUNT_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
)



def _source_targets(m):
    Q, M, B = m.Queue, m.Message, m.SQSBackend
    return {
        "Queue.attributes": Q.attributes.fget,
        "Queue.messages": Q.messages.fget,
        "Queue.approximate_number_of_messages": Q.approximate_number_of_messages.fget,
        "Queue.approximate_number_of_messages_delayed": Q.approximate_number_of_messages_delayed.fget,
        "Queue.approximate_number_of_messages_not_visible": Q.approximate_number_of_messages_not_visible.fget,
        "Queue.add_message": Q.add_message,
        "Queue.delete_message": Q.delete_message,
        "Queue.wait_for_messages": Q.wait_for_messages,
        "Message.mark_received": M.mark_received,
        "Message.visible": M.visible.fget,
        "Message.delayed": M.delayed.fget,
        "SQSBackend.send_message": B.send_message,
        "SQSBackend._validate_message": B._validate_message,
        "SQSBackend.receive_message": B.receive_message,
        "SQSBackend.change_message_visibility": B.change_message_visibility,
        "SQSBackend.get_queue_attributes": B.get_queue_attributes,
        "camelcase_to_underscores": m.camelcase_to_underscores,
        **request_path_targets(),
    }



def _check_shape(m) -> str | None:
    """None if moto looks exactly like what this patch was written against."""
    import moto

    if getattr(moto, "__version__", None) != EXPECTED_MOTO_VERSION:
        return f"moto {getattr(moto, '__version__', '?')} != {EXPECTED_MOTO_VERSION}"
    try:
        targets = _source_targets(m)
    except AttributeError as e:
        return f"moto.sqs.models lacks {e}"
    for name, fn in targets.items():
        try:
            digest = _source_hash(fn)
        except (OSError, TypeError) as e:
            return f"cannot read source of {name}: {e}"
        if digest != EXPECTED_SOURCE_HASHES.get(name):
            return f"{name} differs from moto {EXPECTED_MOTO_VERSION} (source hash {digest})"
    M = m.Message
    for name in ("__deepcopy__", "__setstate__", "__slots__"):
        if hasattr(M, name):
            return f"Message has {name}; PATCH 5 (d) copies it as a plain object"
    pickling = ("__reduce_ex__", "__reduce__", "__getstate__")
    if any(getattr(M, name, None) is not getattr(object, name, None) for name in pickling):
        return "Message overrides pickling; PATCH 5 (d) copies it as a plain object"
    import copyreg

    if M in copyreg.dispatch_table:
        return "Message has a copyreg reducer; PATCH 5 (d) copies it as a plain object"
    q = m.Queue.__init__
    src = inspect.getsource(q)
    for needle in (
        "self._messages: list[Message] = []",
        "self.deleted_messages: set[str] = set()",
        "self._messages_lock = Condition()",  # PATCH 15
    ):
        if needle not in src:
            return f"Queue.__init__ no longer has {needle!r}"
    return None


def apply_patches() -> bool:
    import moto.sqs.models as m

    problem = _check_shape(m)
    if problem:
        _warn(f"{problem}; running moto UNPATCHED (SQS will be slow with deep queues)")
        return False

    Queue, Message, SQSBackend = m.Queue, m.Message, m.SQSBackend

    # ------------------------------------------------------------------ helpers
    # All clock reads go through moto.sqs.models' own names (m.unix_time_millis,
    # rebound to an equivalent by PATCH 13), as the model's own code does.

    def visible_and_not_delayed(now: float, msg) -> bool:
        # == Message.visible and not Message.delayed, evaluated at time `now`
        return now > msg.visible_at and not now < msg.delayed_until

    def count_messages(queue) -> dict[str, int]:
        # One pass + one clock reading for the three approximate counts, instead of
        # three passes with a clock reading per message (four for the first count).
        now = m.unix_time_millis()
        visible = not_visible = delayed = 0
        for msg in list(queue._messages):  # snapshot, as the original comprehensions
            is_delayed = now < msg.delayed_until
            if now > msg.visible_at:
                if not is_delayed:
                    visible += 1
            else:
                not_visible += 1
            if is_delayed:
                delayed += 1
        return {
            "ApproximateNumberOfMessages": visible,
            "ApproximateNumberOfMessagesDelayed": delayed,
            "ApproximateNumberOfMessagesNotVisible": not_visible,
        }

    # "Counts not needed" scope, per thread: the send path reads queue.attributes only
    # for ContentBasedDeduplication, so there the O(depth) counts are left out.
    tls = threading.local()

    def without_counts(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = getattr(tls, "no_counts", False)
            tls.no_counts = True
            try:
                return fn(*args, **kwargs)
            finally:
                tls.no_counts = prev

        return wrapper

    # ---------------------------------------------------- PATCH 1: Queue.attributes
    # Same dict, same key order, same values as models.py:512-540, but the three
    # approximate counts come from one pass (count_messages), and are omitted inside
    # the send path's "counts not needed" scope (PATCH 2).
    def attributes(self) -> dict:
        result: dict = {}
        skip_counts = getattr(tls, "no_counts", False)
        counts = None
        for attribute in self.BASE_ATTRIBUTES:
            if attribute in _COUNT_ATTRIBUTES:
                if skip_counts:
                    continue
                if counts is None:
                    counts = count_messages(self)
                result[attribute] = counts[attribute]
                continue
            result[attribute] = getattr(self, m.camelcase_to_underscores(attribute))
        if self.fifo_queue:
            for attribute in self.FIFO_ATTRIBUTES:
                result[attribute] = getattr(self, m.camelcase_to_underscores(attribute))
        if self.kms_master_key_id:
            for attribute in self.KMS_ATTRIBUTES:
                result[attribute] = getattr(self, m.camelcase_to_underscores(attribute))
        if self.policy:
            result["Policy"] = self.policy
        if self.redrive_policy:
            result["RedrivePolicy"] = m.json.dumps(self.redrive_policy)
        for key in result:
            if isinstance(result[key], bool):
                result[key] = str(result[key]).lower()
        return result

    # ------------------------------------------- PATCH 2: send path without counts
    # send_message (l.876), _validate_message (l.812/819, FIFO) and add_message
    # (l.562, FIFO; also the DLQ move) only read ContentBasedDeduplication.
    patched_send_message = without_counts(SQSBackend.send_message)
    patched_validate_message = without_counts(SQSBackend._validate_message)
    patched_add_message = without_counts(Queue.add_message)

    # ------------------------------------------ PATCH 3: get_queue_attributes
    # models.py:763-792 with queue.attributes evaluated once (it was 1 + 2 per name),
    # and without the counts when none was asked for (e.g. just QueueArn). Names that
    # queue.attributes fills with a plain getattr (PATCH 1: every base attribute but
    # the counts, Policy and RedrivePolicy, which it overrides; the FIFO and KMS ones
    # are conditional) are read directly.
    plain_attributes = frozenset(Queue.BASE_ATTRIBUTES) - set(_COUNT_ATTRIBUTES) - {"Policy", "RedrivePolicy"}
    def get_queue_attributes(self, queue_name, attribute_names):
        queue = self.get_queue(queue_name)
        if not attribute_names:
            return {}
        valid_names = ["All"] + queue.BASE_ATTRIBUTES + queue.FIFO_ATTRIBUTES + queue.KMS_ATTRIBUTES
        invalid_name = next((name for name in attribute_names if name not in valid_names), None)
        if invalid_name or invalid_name == "":
            raise m.InvalidAttributeName(invalid_name)
        if "All" in attribute_names:
            return queue.attributes
        if all(name in plain_attributes for name in attribute_names):
            # e.g. MessageRetentionPeriod, looked up once per received message: the
            # value queue.attributes would hold, without building the other ~13.
            attributes = {}
            for name in attribute_names:
                value = getattr(queue, m.camelcase_to_underscores(name))
                if isinstance(value, bool):
                    value = str(value).lower()
                if value is not None:
                    attributes[name] = value
            return attributes
        if any(name in _COUNT_ATTRIBUTES for name in attribute_names):
            all_attributes = queue.attributes
        else:
            all_attributes = without_counts(lambda: queue.attributes)()
        attributes = {}
        for name in attribute_names:
            if name in all_attributes and all_attributes.get(name) is not None:
                attributes[name] = all_attributes.get(name)
        return attributes

    # --------------------------------------- PATCH 4: receipt handle -> message
    # Every handle a message ever had (they stay valid for delete, l.206-210) maps to
    # the message. Weak values: the index never keeps a message alive. A hit is only
    # trusted if the message is in *this* queue's list; any miss falls back to the
    # original scan, so unknown/foreign/purged handles behave exactly as before.
    handles: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
    orig_mark_received = Message.mark_received

    def mark_received(self, *args, **kwargs):
        orig_mark_received(self, *args, **kwargs)
        handles[self.receipt_handle] = self

    orig_queue_delete = Queue.delete_message

    def queue_delete_message(self, receipt_handle):
        # models.py:613-631: same outcome without scanning the queue twice.
        if receipt_handle in self.deleted_messages:
            return
        message = handles.get(receipt_handle)
        if message is not None:
            try:
                self._messages.remove(message)  # identity match, in C, in place
            except ValueError:
                message = None
        if message is None:
            return orig_queue_delete(self, receipt_handle)  # raises ReceiptHandleIsInvalid
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
        for handle in message.all_receipt_handles:
            handles.pop(handle, None)

    orig_change_visibility = SQSBackend.change_message_visibility

    def change_message_visibility(self, queue_name, receipt_handle, visibility_timeout):
        queue = self.get_queue(queue_name)
        message = handles.get(receipt_handle)
        if message is None or message not in queue._messages:
            return orig_change_visibility(self, queue_name, receipt_handle, visibility_timeout)
        # Body of the loop at models.py:1094-1108, unchanged.
        visibility_timeout_msec = int(visibility_timeout) * 1000
        given_visibility_timeout = m.unix_time_millis() + visibility_timeout_msec
        if given_visibility_timeout - message.sent_timestamp > 43200 * 1000:
            raise m.InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
                "VisibilityTimeout for the message is beyond the limit [43200 seconds]"
            )
        message.change_visibility(visibility_timeout)
        if message.visible and message in queue.pending_messages:
            queue.pending_messages.remove(message)

    # ---------------------------------------------- PATCH 5: receive_message
    # models.py:979-1062, unchanged except the three lines marked PATCH:
    #  (a) candidates come lazily from a snapshot of the queue with one clock reading,
    #      instead of a full list built with two clock readings per message, so a
    #      receive stops scanning once it has `count` messages (the loop broke there
    #      anyway; messages after that point were never looked at);
    #  (b) pending message groups are only gathered for FIFO queues (the only place
    #      they are read is under `queue.fifo_queue`);
    #  (c) deepcopy of a set of str == a set copy;
    #  (d) the per-message deepcopy(message) skips deepcopy's per-value dispatch for
    #      the ~14 immutable attribute values (copy_message).
    atomic_types = frozenset({str, int, float, bool, type(None), bytes})

    def copy_message(message):
        # == deepcopy(message), which for this plain class (checked in _check_shape)
        # is copy._reconstruct: a new instance from cls.__new__ (BaseModel.__new__, so
        # it is tracked like any other), then a deep copy of __dict__ with one memo.
        # deepcopy returns immutable values as they are; the rest still go through it.
        cls = type(message)
        copy = cls.__new__(cls)
        memo = {id(message): copy}
        state = {}
        for key, value in message.__dict__.items():
            state[key] = value if type(value) in atomic_types else deepcopy(value, memo)
        copy.__dict__.update(state)
        return copy

    def iter_visible(queue):
        now = m.unix_time_millis()
        for message in list(queue._messages):
            # visible_and_not_delayed(now, message), inlined: this loop also walks the
            # in-flight (invisible) messages at the head of the queue
            if now > message.visible_at and not now < message.delayed_until:
                yield message

    def receive_message(
        self, queue_name, count, wait_seconds_timeout, visibility_timeout, message_attribute_names=None
    ):
        if message_attribute_names is None:
            message_attribute_names = []
        queue = self.get_queue(queue_name)
        result = []
        previous_result_count = len(result)

        polling_end = m.unix_time() + wait_seconds_timeout
        # PATCH (b)(c)
        currently_pending_groups = set(queue.pending_message_groups) if queue.fifo_queue else set()

        while True:
            if result or (wait_seconds_timeout and m.unix_time() > polling_end):
                break

            messages_to_dlq = []

            for message in iter_visible(queue):  # PATCH (a)
                if not message.visible:
                    continue

                if message in queue.pending_messages:
                    # The message is pending but is visible again, so the
                    # consumer must have timed out.
                    queue.pending_messages.remove(message)
                    if queue.fifo_queue:  # PATCH (b)(c)
                        currently_pending_groups = set(queue.pending_message_groups)

                if message.group_id and queue.fifo_queue:
                    if message.group_id in currently_pending_groups:
                        continue

                if (
                    queue.dead_letter_queue is not None
                    and queue.redrive_policy
                    and message.approximate_receive_count >= queue.redrive_policy["maxReceiveCount"]
                ):
                    messages_to_dlq.append(message)
                    continue

                queue.pending_messages.add(message)
                message.mark_received(visibility_timeout=visibility_timeout)
                message_copy = copy_message(message)  # PATCH (d)
                m._filter_message_attributes(message_copy, message_attribute_names)
                if not self.is_message_valid_based_on_retention_period(queue_name, message):
                    break
                result.append(message_copy)
                if len(result) >= count:
                    break

            for message in messages_to_dlq:
                queue._messages.remove(message)
                queue.dead_letter_queue.add_message(message)

            if previous_result_count == len(result):
                if wait_seconds_timeout == 0:
                    break
                queue.wait_for_messages(1)
                continue

            previous_result_count = len(result)

        return result

    # ------------------------------------------- PATCH 6: long-poll wake-up test
    # models.py:633-635 waits for `self.messages` (a full list, clock per message) to
    # be non-empty. Same truth value, short-circuiting from the newest message (the
    # one a send just appended), one clock reading.
    def wait_for_messages(self, timeout):
        def any_visible():
            now = m.unix_time_millis()
            return any(visible_and_not_delayed(now, msg) for msg in reversed(list(self._messages)))

        with self._messages_lock:
            self._messages_lock.wait_for(any_visible, timeout=timeout)

    # --------------------------------------- PATCH 7: memoize camelcase_to_underscores
    # A pure str -> str function, called ~20 times per queue.attributes evaluation,
    # each a Python character loop. Rebound only in moto.sqs.models.
    cached_camelcase = functools.lru_cache(maxsize=512)(m.camelcase_to_underscores)

    # PATCH 8-14 (request path), built before anything is applied
    request_path_patches = build_request_path_patches(m)

    # ------------------------------- PATCH 15: a send wakes one long-poller, not all
    # add_message (models.py:573-575) calls notify_all() on the queue's Condition for
    # each message, so every waiting ReceiveMessage wakes, re-checks the queue, and
    # those that find it non-empty all receive: 10 pollers split a batch of 10 into
    # small ones, each paying a handler call and a delete. One waiter per message
    # added is enough: a woken poller takes up to its batch; one that finds nothing
    # waits on; none sleeps past its 1 s re-check (models.py:1057), as before.
    class WakeOneCondition(m.Condition):
        def notify_all(self):
            self.notify(1)

    # ----------------------------------------------------------- apply, all at once
    m.Condition = WakeOneCondition  # Queue.__init__ reads the module's name
    Queue.attributes = property(attributes)
    Queue.add_message = patched_add_message
    Queue.delete_message = queue_delete_message
    Queue.wait_for_messages = wait_for_messages
    Message.mark_received = mark_received
    SQSBackend.send_message = patched_send_message
    SQSBackend._validate_message = patched_validate_message
    SQSBackend.get_queue_attributes = get_queue_attributes
    SQSBackend.change_message_visibility = change_message_visibility
    SQSBackend.receive_message = receive_message
    m.camelcase_to_underscores = cached_camelcase
    for target, name, value in request_path_patches:
        setattr(target, name, value)
    return True


def main() -> None:
    if os.environ.get("MOTO_SQS_FAST", "1") == "0":
        _warn("MOTO_SQS_FAST=0: running moto unpatched")
    else:
        try:
            if apply_patches():
                _warn(f"SQS fast paths enabled (moto {EXPECTED_MOTO_VERSION})")
        except Exception as e:  # never keep the emulator from starting
            _warn(f"patching failed ({e!r}); running moto UNPATCHED")
    if os.environ.get("MOTO_WSGI", "waitress") == "werkzeug":
        from moto.server import main as moto_server_main

        # Same as the `moto_server` console script: moto.server.main(argv).
        sys.exit(moto_server_main(sys.argv[1:]))
    serve_waitress(sys.argv[1:])


def serve_waitress(argv: list) -> None:
    """moto.server.main's application, served by waitress instead of werkzeug's
    development server. That server answers every request with "Connection: close"
    (werkzeug cannot drain a request body before the next request line), so each
    SDK call paid for a new TCP connection, a new thread and an access-log line in
    this one GIL-bound process. Waitress keeps connections alive and serves them
    from a thread pool. Long-polled ReceiveMessage calls hold a thread for up to
    20 s each, hence the pool's size. MOTO_WSGI=werkzeug runs moto's own server."""
    import argparse
    import signal

    import waitress
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto.server.main does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # as moto.server.main does
    threads = 64
    _warn(f"serving on http://{args.host}:{args.port} (waitress, {threads} threads)")
    waitress.serve(
        app,
        host=args.host,
        port=args.port,
        threads=threads,
        connection_limit=512,
        channel_timeout=120,
    )


if __name__ == "__main__":
    main()
