#!/usr/bin/env python3
"""Probes a local SQS server over the raw AWS JSON 1.0 protocol (as aws-sdk-rust speaks it).
Used by infra/local/sqs-eval; see docs/SQS_SERVERS.md. Standard library only.

  sqs_probe.py transcript PORT      sqs_transcript.py run so that it survives servers
                                    that are not moto (a NextToken that is not moto's, an
                                    operation that crashes the script); queue URLs are
                                    normalized to 127.0.0.1:PORT, a crash ends the transcript
                                    with a {"op": "CRASHED", ...} entry.
  sqs_probe.py compare REF.json CAND.json [--known FILE]
                                    one line per transcript entry that differs in what a
                                    client can act on (see semantic()), then the count.
                                    With --known (infra/local/sqs-known-differences.txt):
                                    exit 1 if any difference is not listed there.
  sqs_probe.py depth PORT [--max 50000] [--budget 240] [--pid SERVER_PID]
                                    ms per SendMessageBatch(10) / ReceiveMessage(10) /
                                    DeleteMessageBatch(10) at depth 0, 1,000, 10,000, 50,000
                                    (stops filling when the time budget in seconds is spent);
                                    with --pid, the server's RSS (with children) at each depth.
  sqs_probe.py queues PORT [--n 200]
                                    the same costs with 1 queue, then with N queues; also
                                    CreateQueue and ListQueues costs.
"""
import base64, http.client, json, os, re, statistics, sys, threading, time

HDR = {"content-type": "application/x-amz-json-1.0",
       "user-agent": "aws-sdk-rust/1.3.9 os/linux lang/rust/1.90.0",
       "authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, "
                        "SignedHeaders=host, Signature=" + "0" * 64}
BODY = json.dumps({"deviceId": "dev-0001", "ts": 0, "temperature": 21.5, "pad": "x" * 180})


class Client:
    def __init__(self, port):
        self.port, self.c = port, None

    def call(self, op, body):
        for attempt in (1, 2):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.c.request("POST", "/", body=json.dumps(body).encode(),
                               headers={**HDR, "x-amz-target": "AmazonSQS." + op})
                r = self.c.getresponse()
                raw = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.c.close(); self.c = None
                out = json.loads(raw) if raw else {}
                if r.status != 200:
                    raise RuntimeError(f"{op}: HTTP {r.status} {raw[:200]!r}")
                return out
            except (ConnectionError, http.client.HTTPException):
                self.c.close(); self.c = None
                if attempt == 2:
                    raise


def timed(fn, *a):
    t = time.perf_counter(); fn(*a); return (time.perf_counter() - t) * 1000


def cycle_costs(cl, url, rounds=20):
    """Median ms of a SendMessageBatch(10), a ReceiveMessage(10) (visibility 60 s) and a
    DeleteMessageBatch of what was received; the queue's depth is left as it was."""
    s, r, d = [], [], []
    for i in range(rounds):
        entries = [{"Id": str(j), "MessageBody": BODY} for j in range(10)]
        s.append(timed(cl.call, "SendMessageBatch", {"QueueUrl": url, "Entries": entries}))
        box = {}
        r.append(timed(lambda: box.update(cl.call("ReceiveMessage", {
            "QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 60, "WaitTimeSeconds": 0}))))
        msgs = box.get("Messages", [])
        if msgs:
            d.append(timed(cl.call, "DeleteMessageBatch", {"QueueUrl": url, "Entries": [
                {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(msgs)]}))
    return {"send_batch10_ms": round(statistics.median(s), 2),
            "receive10_ms": round(statistics.median(r), 2),
            "delete_batch10_ms": round(statistics.median(d), 2) if d else None}


def fill(port, url, n, deadline, threads=4):
    """Sends n messages (batches of 10) from `threads` connections; returns how many were sent."""
    sent = [0]
    lock = threading.Lock()
    todo = [n // 10]

    def worker():
        cl = Client(port)
        while time.time() < deadline:
            with lock:
                if todo[0] <= 0:
                    return
                todo[0] -= 1
            cl.call("SendMessageBatch", {"QueueUrl": url, "Entries": [
                {"Id": str(j), "MessageBody": BODY} for j in range(10)]})
            with lock:
                sent[0] += 10

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    return sent[0]


def rss_mb(pid):
    """RSS of a process and its children (gunicorn's worker), from /proc."""
    if not pid:
        return None
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p}/status").read()).group(1))
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except OSError:
            pass
    return round(total / 1024)


def depth(port, max_depth=50000, budget=240.0, pid=0):
    cl = Client(port)
    url = cl.call("CreateQueue", {"QueueName": f"probe-depth-{os.getpid()}"})["QueueUrl"]
    deadline = time.time() + budget
    rows, have = [], 0
    for target in (0, 1000, 10000, 50000):
        if target > max_depth:
            break
        t0 = time.time()
        if target > have:
            have += fill(port, url, target - have, deadline)
        fill_s = time.time() - t0
        rows.append({"depth": have, "fill_s": round(fill_s, 1), **cycle_costs(cl, url), "rss_mb": rss_mb(pid)})
        if have < target:
            rows[-1]["note"] = f"fill to {target} stopped by the {budget:.0f} s budget"
        print(json.dumps(rows[-1]), flush=True)
        if have < target:
            break
    cl.call("DeleteQueue", {"QueueUrl": url})
    return rows


def queues(port, n=200):
    cl = Client(port)
    pid = os.getpid()
    first = cl.call("CreateQueue", {"QueueName": f"probe-q-{pid}-0"})["QueueUrl"]
    one = cycle_costs(cl, first)
    one["list_queues_ms"] = round(statistics.median(timed(cl.call, "ListQueues", {}) for _ in range(10)), 2)
    print(json.dumps({"queues": 1, **one}), flush=True)
    t0 = time.perf_counter()
    urls = [first] + [cl.call("CreateQueue", {"QueueName": f"probe-q-{pid}-{i}"})["QueueUrl"] for i in range(1, n)]
    create_ms = (time.perf_counter() - t0) * 1000 / (n - 1)
    # one message waiting in every queue, as a busy stack would have
    for u in urls:
        cl.call("SendMessage", {"QueueUrl": u, "MessageBody": BODY})
    many = cycle_costs(cl, urls[n // 2])
    many["list_queues_ms"] = round(statistics.median(timed(cl.call, "ListQueues", {}) for _ in range(10)), 2)
    many["get_queue_url_ms"] = round(statistics.median(
        timed(cl.call, "GetQueueUrl", {"QueueName": f"probe-q-{pid}-{i}"}) for i in range(0, n, n // 10)), 2)
    many["create_queue_ms"] = round(create_ms, 2)
    print(json.dumps({"queues": n, **many}), flush=True)
    for u in urls:
        cl.call("DeleteQueue", {"QueueUrl": u})


def transcript(port):
    src_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sqs_transcript.py")
    real_b64 = base64.b64decode

    def tolerant_b64(s, *a, **k):  # moto's NextToken is base64 JSON; others' need not be
        try:
            raw = real_b64(s, *a, **k)
            json.loads(raw)
            return raw
        except Exception:
            return json.dumps({"opaque_token": True}).encode()

    base64.b64decode = tolerant_b64
    sys.argv = [src_path, str(port)]
    g = {"__name__": "__transcript__", "__file__": src_path}
    src = open(src_path).read()
    # the script prints at its end; run all of it but the final dump, then dump ourselves
    src = src.replace("json.dump(out, sys.stdout, indent=1, sort_keys=False)\nprint()", "")
    try:
        exec(compile(src, src_path, "exec"), g)
    except Exception as e:
        g.setdefault("out", []).append({"op": "CRASHED", "error": f"{type(e).__name__}: {e}"})
    text = json.dumps(g.get("out", []), indent=1, sort_keys=False)
    text = re.sub(rf"(127\.0\.0\.1|localhost|sqs\.[a-z0-9-]+\.localhost(\.localstack\.cloud)?):{port}\b",
                  "127.0.0.1:PORT", text)
    print(text)


ACCOUNT = re.compile(r"\b\d{12}\b")


def semantic(x, key=None):
    """What a client can act on: transport headers, request ids, key order, the account id,
    SenderId and the wording of error messages are dropped; error codes are kept."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k in ("header_names", "requestid", "raw_key_order", "SenderId"):
                continue
            if k in ("message", "Message") and ("__type" in x or "Code" in x or "code" in x):
                continue
            if k == "__type" and isinstance(v, str):
                v = v.split("#")[-1]
            if k == "headers":
                v = {h: (val.split(";")[0] if h == "content-type" else val) for h, val in v.items()
                     if h in ("content-type", "x-amzn-query-error")}
            out[k] = semantic(v, k)
        return out
    if isinstance(x, list):
        return [semantic(v, key) for v in x]
    if isinstance(x, str):
        return ACCOUNT.sub("<acct>", x)
    return x


def diff_paths(a, b, path=""):
    if type(a) is not type(b):
        return [f"{path}: {json.dumps(a)[:90]} -> {json.dumps(b)[:90]}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in b:
                out.append(f"{path}.{k}: missing")
            elif k not in a:
                out.append(f"{path}.{k}: extra {json.dumps(b[k])[:90]}")
            else:
                out += diff_paths(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items -> {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff_paths(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)[:90]} -> {json.dumps(b)[:90]}"]


HANDLE = re.compile(r"<ReceiptHandle#\d+>")


def local_handles(entry):
    """Receipt handles numbered within the entry: the transcript numbers them across the
    whole run, so one extra handle early on (a timing difference) would shift every later
    receive. Which handles in an entry are the same one is kept."""
    seen = {}
    text = HANDLE.sub(lambda m: seen.setdefault(m.group(0), f"<ReceiptHandle#{len(seen) + 1}>"), json.dumps(entry))
    return json.loads(text)


def entry_keys(entries):
    """The name a known difference is listed under: the entry's label, with #N from the
    second entry of the same label on."""
    count, keys = {}, []
    for e in entries:
        op = e.get("op", "?")
        count[op] = count.get(op, 0) + 1
        keys.append(op if count[op] == 1 else f"{op}#{count[op]}")
    return keys


INDEX = re.compile(r"\[\d+\]")


def load_known(path):
    """Known differences: `ENTRY: DIFF; DIFF ... | why` (blank lines and # comments skipped).
    A DIFF is a line of `compare` with array indices written [*]; * in it matches anything."""
    known = []
    for n, line in enumerate(open(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        body, sep, why = line.partition(" | ")
        entry, sep2, diffs = body.partition(": ")
        if not (sep and sep2 and why.strip() and diffs.strip()):
            sys.exit(f"{path}:{n}: want `ENTRY: DIFF; DIFF ... | why`, got: {line}")
        pats = [re.compile(".*".join(map(re.escape, d.strip().split("*"))) + r"\Z", re.S)
                for d in diffs.split("; ")]
        known.append({"line": n, "entry": entry.strip(), "pats": pats, "used": set()})
    return known


def compare(ref_path, cand_path, known_path=None):
    ref, cand = json.load(open(ref_path)), json.load(open(cand_path))
    keys = entry_keys(ref)
    known = load_known(known_path) if known_path else None
    n = new = 0
    listed = []
    for i in range(max(len(ref), len(cand))):
        a = semantic(local_handles(ref[i])) if i < len(ref) else None
        b = semantic(local_handles(cand[i])) if i < len(cand) else None
        if a == b:
            continue
        n += 1
        if a is None or b is None or a.get("op") != b.get("op"):
            new += 1  # the transcripts lost step: never a known difference
            print(f"[{i}] NEW: only in {'candidate' if a is None else 'reference'}: {json.dumps(b if a is None else a)[:150]}"
                  if a is None or b is None else f"[{i}] NEW: entry {a.get('op')} -> {b.get('op')}")
            continue
        d = sorted(set(INDEX.sub("[*]", x) for x in diff_paths(a, b)))
        if known is None:
            print(f"[{i}] {a.get('op')}: " + "; ".join(d[:4]) + (f"; (+{len(d) - 4} more)" if len(d) > 4 else ""))
            continue
        unlisted = []
        for x in d:
            hits = [(k, j) for k in known if k["entry"] == keys[i] for j, p in enumerate(k["pats"]) if p.match(x)]
            for k, j in hits:
                k["used"].add(j)
            if not hits:
                unlisted.append(x)
        if unlisted:
            new += 1
            print(f"[{i}] NEW {keys[i]}: " + "; ".join(unlisted))
        else:
            listed.append(keys[i])
    print(f"SEMANTIC {n} of {len(ref)} transcript entries differ")
    if known is None:
        return 0
    print(f"as listed ({len(listed)}): " + ", ".join(listed))
    for k in known:
        if len(k["used"]) < len(k["pats"]):
            print(f"note: {known_path}:{k['line']} ({k['entry']}) not seen in full this run")
    print(f"{new} of them in a way {known_path} does not list")
    return 1 if new else 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    opt = lambda name, d: type(d)(args[args.index(name) + 1]) if name in args else d
    if cmd == "transcript":
        transcript(int(args[0]))
    elif cmd == "compare":
        sys.exit(compare(args[0], args[1], opt("--known", "") or None))
    elif cmd == "depth":
        depth(int(args[0]), opt("--max", 50000), opt("--budget", 240.0), opt("--pid", 0))
    elif cmd == "queues":
        queues(int(args[0]), opt("--n", 200))
    else:
        sys.exit(__doc__)
