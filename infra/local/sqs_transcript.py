#!/usr/bin/env python3
"""SQS semantics over the raw AWS JSON 1.0 protocol; prints a normalized transcript.

Used by infra/local/sqs-check (through sqs_probe.py transcript): run against stock moto,
the reference, and against ministack, the stack's SQS server; the two may differ only as
infra/local/sqs-known-differences.txt says. Covers send and batch send (attributes, MD5s,
delays), receive counts, visibility reappearance, redrive at maxReceiveCount=2, deletes
(current/stale/invalid handles), visibility changes, purge, attributes, long poll, FIFO
ordering and deduplication, tags and error shapes. Usage: sqs_transcript.py PORT [--seeded]
(--seeded: moto only)"""
import http.client, json, sys, threading, time, base64, hashlib

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 5099
SEEDED = "--seeded" in sys.argv  # moto-api seed: ids must then match exactly, not just in shape
KEEP_HEADERS = ("content-type", "x-amzn-query-error", "x-amzn-errortype", "status")
# Set by the web server, not by SQS.
TRANSPORT_HEADERS = ("date", "server", "connection", "via")
VOLATILE = {"MessageId", "ReceiptHandle", "SentTimestamp", "ApproximateFirstReceiveTimestamp",
            "CreatedTimestamp", "LastModifiedTimestamp", "SequenceNumber"}
ids: dict = {}
out = []


def norm_id(kind, v):
    key = (kind, v)
    if key not in ids:
        ids[key] = f"<{kind}#{sum(1 for k in ids if k[0] == kind) + 1}>"
    return ids[key]


def normalize(x, key=None):
    if isinstance(x, dict):
        return {k: normalize(v, k) for k, v in x.items()}
    if isinstance(x, list):
        return [normalize(v, key) for v in x]
    if key == "NextToken" and isinstance(x, str):  # holds hash() of the params: per process
        t = json.loads(base64.b64decode(x))
        t["parameterChecksum"] = "<hash>"
        return t
    if key in VOLATILE and isinstance(x, str):
        if SEEDED and key in ("MessageId", "ReceiptHandle"):
            return x
        return norm_id(key, x) if key in ("MessageId", "ReceiptHandle", "SequenceNumber") else "<ts>"
    return x


def call(op, body, label=None, show=True):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    data = json.dumps(body).encode()
    d = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    c.request("POST", "/", body=data, headers={
        "content-type": "application/x-amz-json-1.0", "x-amz-target": "AmazonSQS." + op,
        "x-amz-date": d, "x-amzn-query-mode": "true",
        "user-agent": "aws-sdk-rust/1.3.9 os/linux lang/rust/1.90.0",
        "authorization": f"AWS4-HMAC-SHA256 Credential=test/{d[:8]}/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=" + "0" * 64})
    r = c.getresponse()
    raw = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    parsed = json.loads(raw) if raw else None
    if show:
        entry = {"op": label or op, "status": r.status,
                 "headers": {k: hdrs[k] for k in KEEP_HEADERS if k in hdrs},
                 "header_names": sorted(k for k in hdrs if k not in TRANSPORT_HEADERS),
                 "requestid": hdrs.get("x-amzn-requestid", "") if SEEDED else len(hdrs.get("x-amzn-requestid", "")),
                 "content_length_ok": int(hdrs.get("content-length", -1)) == len(raw),
                 "body": normalize(parsed)}
        if parsed is not None:
            # key order of the raw body, too
            entry["raw_key_order"] = list(parsed.keys()) if isinstance(parsed, dict) else None
        out.append(entry)
    return parsed


def note(**kw):
    out.append(kw)


def attrs(url, names=("All",), label="GetQueueAttributes"):
    return call("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": list(names)}, label)


def receive(url, n=10, vt=None, wait=0, label="ReceiveMessage", **extra):
    b = {"QueueUrl": url, "MaxNumberOfMessages": n, "WaitTimeSeconds": wait,
         "MessageSystemAttributeNames": ["All"], "MessageAttributeNames": ["All"], **extra}
    if vt is not None:
        b["VisibilityTimeout"] = vt
    return call("ReceiveMessage", b, label).get("Messages", []) if True else None


# --- queues
if SEEDED:
    c = http.client.HTTPConnection("127.0.0.1", PORT); c.request("POST", "/moto-api/seed?a=42"); assert c.getresponse().status == 200; c.close()
dlq = call("CreateQueue", {"QueueName": "sem-dlq"})["QueueUrl"]
dlq_arn = attrs(dlq, ["QueueArn"])["Attributes"]["QueueArn"]
q = call("CreateQueue", {"QueueName": "sem-main", "Attributes": {
    "VisibilityTimeout": "1", "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})}})["QueueUrl"]
call("GetQueueUrl", {"QueueName": "sem-main"})
call("ListQueues", {"QueueNamePrefix": "sem-"})
call("ListQueues", {"QueueNamePrefix": "sem-", "MaxResults": 1}, "ListQueues(paginated)")
attrs(q, label="GetQueueAttributes(All)")
call("TagQueue", {"QueueUrl": q, "Tags": {"team": "iot", "env": "test"}})
call("ListQueueTags", {"QueueUrl": q})
call("UntagQueue", {"QueueUrl": q, "TagKeys": ["env"]})
call("ListQueueTags", {"QueueUrl": q}, "ListQueueTags(after untag)")
call("ListDeadLetterSourceQueues", {"QueueUrl": dlq})

# --- send: single, batch, attributes, delay
call("SendMessage", {"QueueUrl": q, "MessageBody": "hello", "MessageAttributes": {
    "s": {"DataType": "String", "StringValue": "v"}, "n": {"DataType": "Number", "StringValue": "42"},
    "b": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\x00\x01bin").decode()}}})
call("SendMessageBatch", {"QueueUrl": q, "Entries": [{"Id": f"e{i}", "MessageBody": f"m{i}" + "x" * i} for i in range(5)]})
call("SendMessageBatch", {"QueueUrl": q, "Entries": [{"Id": "d", "MessageBody": "delayed", "DelaySeconds": 2}]}, "SendMessageBatch(delayed)")
attrs(q, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible"], "counts after send")
attrs(q, ["QueueArn", "VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "RedrivePolicy", "SqsManagedSseEnabled"], "plain attrs")
attrs(q, ["MessageRetentionPeriod"], "retention only")

# --- receive everything visible (6), check counts, visibility reappearance, receive counts
first = receive(q, 10, label="receive #1")
attrs(q, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"], "counts after receive #1")
receive(q, 10, label="receive while invisible")
time.sleep(2.2)  # VisibilityTimeout 1 s -> all back; the delayed one is visible too now
second = receive(q, 10, label="receive #2 (reappeared, count 2)")
attrs(q, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"], "counts after receive #2")
time.sleep(1.3)
third = receive(q, 10, label="receive #3 (maxReceiveCount=2 -> DLQ)")
attrs(q, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"], "main counts after redrive")
attrs(dlq, ["ApproximateNumberOfMessages"], "dlq counts after redrive")
dl = receive(dlq, 10, vt=30, label="receive from DLQ")

# --- delete: single, batch with an invalid handle and an old handle, duplicates, empty
if dl:
    call("DeleteMessage", {"QueueUrl": dlq, "ReceiptHandle": dl[0]["ReceiptHandle"]})
    call("DeleteMessage", {"QueueUrl": dlq, "ReceiptHandle": dl[0]["ReceiptHandle"]}, "DeleteMessage(again)")
entries = [{"Id": f"x{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(dl[1:3])]
entries.append({"Id": "bad", "ReceiptHandle": "not-a-real-handle"})
call("DeleteMessageBatch", {"QueueUrl": dlq, "Entries": entries}, "DeleteMessageBatch(1 invalid)")
if len(dl) > 3:
    h = dl[3]["ReceiptHandle"]
    call("DeleteMessageBatch", {"QueueUrl": dlq, "Entries": [{"Id": "a", "ReceiptHandle": h}, {"Id": "b", "ReceiptHandle": h}]}, "DeleteMessageBatch(dup handle)")
call("DeleteMessageBatch", {"QueueUrl": dlq, "Entries": []}, "DeleteMessageBatch(empty)")
call("DeleteMessage", {"QueueUrl": dlq, "ReceiptHandle": "garbage"}, "DeleteMessage(invalid)")
# old receipt handle of a message still deletes it
call("SendMessage", {"QueueUrl": q, "MessageBody": "old-handle"})
m1 = receive(q, 1, vt=0, label="receive vt=0")
m2 = receive(q, 1, vt=30, label="receive again (new handle)")
call("DeleteMessage", {"QueueUrl": q, "ReceiptHandle": m1[0]["ReceiptHandle"]}, "DeleteMessage(old handle)")
attrs(q, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"], "counts after old-handle delete")

# --- ChangeMessageVisibility(+Batch)
call("SendMessageBatch", {"QueueUrl": q, "Entries": [{"Id": str(i), "MessageBody": f"cmv{i}"} for i in range(3)]})
got = receive(q, 3, vt=60, label="receive for CMV")
call("ChangeMessageVisibility", {"QueueUrl": q, "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 0})
receive(q, 3, vt=60, label="receive after CMV 0")
call("ChangeMessageVisibilityBatch", {"QueueUrl": q, "Entries": [
    {"Id": "ok", "ReceiptHandle": got[1]["ReceiptHandle"], "VisibilityTimeout": 0},
    {"Id": "bad", "ReceiptHandle": "nope", "VisibilityTimeout": 0}]}, "CMVBatch(1 invalid)")
call("ChangeMessageVisibility", {"QueueUrl": q, "ReceiptHandle": "nope", "VisibilityTimeout": 0}, "CMV(invalid)")
call("ChangeMessageVisibility", {"QueueUrl": q, "ReceiptHandle": got[2]["ReceiptHandle"], "VisibilityTimeout": 50000}, "CMV(too long)")
receive(q, 3, vt=60, label="receive after CMVBatch")
call("PurgeQueue", {"QueueUrl": q})
attrs(q, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"], "counts after purge")

# --- long poll wakes up on send
lp = {}
def poller():
    t0 = time.time()
    lp["msgs"] = receive(q, 10, wait=10, label="long poll")
    lp["dt"] = time.time() - t0
t = threading.Thread(target=poller); t.start()
time.sleep(1.0)
call("SendMessage", {"QueueUrl": q, "MessageBody": "wake"}, show=False)
t.join()
note(op="long poll woke up early", ok=1.0 <= lp["dt"] < 3.0, got=len(lp["msgs"]))
t0 = time.time(); receive(q, 10, wait=1, label="long poll timeout (empty)"); note(op="long poll timeout", ok=0.9 <= time.time() - t0 < 2.5)

# --- FIFO: group ordering, dedup
fq = call("CreateQueue", {"QueueName": "sem.fifo", "Attributes": {"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "30"}})["QueueUrl"]
call("SendMessageBatch", {"QueueUrl": fq, "Entries": [{"Id": f"a{i}", "MessageBody": f"A{i}", "MessageGroupId": "A"} for i in range(3)]
     + [{"Id": f"b{i}", "MessageBody": f"B{i}", "MessageGroupId": "B"} for i in range(2)]}, "FIFO send")
call("SendMessage", {"QueueUrl": fq, "MessageBody": "A0", "MessageGroupId": "A"}, "FIFO dedup send")
call("SendMessage", {"QueueUrl": fq, "MessageBody": "X", "MessageGroupId": "C", "MessageDeduplicationId": "dd"}, "FIFO explicit dedup id")
attrs(fq, label="FIFO attrs")
f1 = receive(fq, 2, label="FIFO receive 2")
f2 = receive(fq, 10, label="FIFO receive (groups A,B pending?)")
for m in f1 + f2:
    call("DeleteMessage", {"QueueUrl": fq, "ReceiptHandle": m["ReceiptHandle"]}, show=False)
f3 = receive(fq, 10, label="FIFO receive after deletes")
call("SendMessage", {"QueueUrl": fq, "MessageBody": "nogroup"}, "FIFO missing group id")

# --- errors
call("ReceiveMessage", {"QueueUrl": q, "MaxNumberOfMessages": 11}, "Receive(Max=11)")
call("GetQueueAttributes", {"QueueUrl": q, "AttributeNames": ["Bogus"]}, "GetQueueAttributes(bogus)")
call("SendMessage", {"QueueUrl": q + "-nope", "MessageBody": "x"}, "SendMessage(no queue)")
call("SendMessageBatch", {"QueueUrl": q, "Entries": []}, "SendMessageBatch(empty)")
call("SendMessageBatch", {"QueueUrl": q, "Entries": [{"Id": "same", "MessageBody": "1"}, {"Id": "same", "MessageBody": "2"}]}, "SendMessageBatch(dup ids)")
call("SendMessage", {"QueueUrl": q, "MessageBody": "x", "MessageAttributes": {"bad": {"DataType": "Weird", "StringValue": "x"}}}, "SendMessage(bad attr type)")
call("SetQueueAttributes", {"QueueUrl": q, "Attributes": {"VisibilityTimeout": "5"}})
attrs(q, ["VisibilityTimeout"], "VT after set")
call("DeleteQueue", {"QueueUrl": fq}); call("DeleteQueue", {"QueueUrl": q}); call("DeleteQueue", {"QueueUrl": dlq})
call("ListQueues", {"QueueNamePrefix": "sem"}, "ListQueues(after delete)")

json.dump(out, sys.stdout, indent=1, sort_keys=False)
print()
