"""Request-path patches (PATCH 8-14) for moto_sqs_fast.py, the stack's moto launcher.

moto 5.2.5 spends most of a small SQS request outside the SQS model: finding the
backend for the URL (a directory listing and ~180 regexes per request), a generic
response serializer (~8 Python calls per output field), random strings drawn one
`random.choice` per character, `inspect.getmembers` per request, a datetime-based
clock. These patches cache or compile that work once; responses stay byte-identical.
The launcher checks every function named in REQUEST_PATH_SOURCE_HASHES before it
applies anything, and runs stock moto if one differs.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import string
import sys
import time

# sha256[:16] of inspect.getsource() of each moto function replaced, re-implemented
# or emulated here, as shipped in moto 5.2.5.
REQUEST_PATH_SOURCE_HASHES = {
    "DomainDispatcherApplication.get_backend_for_host": "1f41972c1e4e660f",
    "DomainDispatcherApplication.get_application": "0ff6939685bde917",
    "list_of_moto_modules": "4f741a10b06500e8",
    "BaseResponse.call_action": "26076963fd17fd1a",
    "method_names_from_class": "9dbac89d082b655f",
    "BaseResponse._enrich_response": "86cd4a4051dd20e8",
    "ActionResult.execute_result": "6333faa349b58671",
    "BaseResponse.serialized": "af486a0ef1327162",
    "ResponseSerializer.__init__": "21dda4322d76b7c5",
    "ResponseSerializer.serialize": "a559a5e148b262c7",
    "ResponseSerializer._create_default_response": "68090927c5065341",
    "ResponseSerializer._serialize_result": "279351f4cb0eb300",
    "ResponseSerializer._serialize": "4eccca5bf02593ef",
    "ResponseSerializer._default_serialize": "25ce8ddbb1a991c0",
    "ResponseSerializer._serialize_type_structure": "f9b47068f40ce489",
    "ResponseSerializer._serialize_structure_member": "437fdce43aa5ac84",
    "ResponseSerializer.get_value": "5ac16904b91c2935",
    "ResponseSerializer.get_serialized_name": "2c23dcac85ccc396",
    "ResponseSerializer._serialize_type_integer": "57e0b6b7148e79eb",
    "ResponseSerializer._serialize_type_blob": "acd7e746cf06090e",
    "ResponseSerializer._base64": "5a3642d8c2a14b24",
    "BaseJSONSerializer._serialized_result_to_response": "99acea02e74ab1c4",
    "BaseJSONSerializer._serialize_body": "7bdc6c30f5112452",
    "BaseJSONSerializer._get_protocol_specific_content_type": "5ddd9df82bc13c06",
    "BaseJSONSerializer._serialize_type_map": "faa32d1fa9a8bfc9",
    "BaseJSONSerializer._serialize_type_list": "f87b14fe9166e099",
    "BaseJSONSerializer._serialize_type_structure": "36873909cd0aeb4d",
    "BaseJSONSerializer._serialize_type_string": "44954e02145012ba",
    "AttributePicker.__call__": "c15da8ec29c1afa4",
    "AttributePicker.get_possible_keys": "cb284052c5ea7fe1",
    "XFormedAttributePicker.get_possible_keys": "f0d20f55f37fd8a1",
    "utils.get_value": "9b06b87ce416131e",
    "utils._get_value_for_key": "563aa7bc75bd5bb0",
    "generate_receipt_handle": "10853f98152c8dab",
    "MotoRandom.get_random_string": "942eb93ebea1f80a",
    "utils.unix_time": "f0576ec9e5f586e5",
    "utils.unix_time_millis": "7a37e1337d02962e",
    "utils.utcnow": "7b8bb404c4f6dc02",
    "utils.utcfromtimestamp": "434182541f880ef3",
}

# Flask is not pinned by moto[server]==5.2.5, so drift there only turns off the one
# patch that touches it (PATCH 14), not the whole launcher.
FLASK_SOURCE_HASHES = {
    "Request._load_form_data": "b3f03c35169deca8",
    "attach_enctype_error_multidict": "e60192255986464b",
}


def warn(msg: str) -> None:
    print(f"moto_sqs_fast: {msg}", file=sys.stderr, flush=True)


def source_hash(fn) -> str:
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


def request_path_targets():
    import moto.backends
    import moto.core.responses as cr
    import moto.core.serialize as cs
    import moto.core.utils as cu
    import moto.moto_server.werkzeug_app as wa
    import moto.sqs.utils
    from moto.moto_api._internal.moto_random import MotoRandom

    D, BR, RS, BJ = wa.DomainDispatcherApplication, cr.BaseResponse, cs.ResponseSerializer, cs.BaseJSONSerializer
    return {
        "DomainDispatcherApplication.get_backend_for_host": D.get_backend_for_host,
        "DomainDispatcherApplication.get_application": D.get_application,
        "list_of_moto_modules": moto.backends.list_of_moto_modules,  # PATCH 8 relies on it
        "BaseResponse.call_action": BR.call_action,
        "method_names_from_class": cu.method_names_from_class,
        "BaseResponse._enrich_response": BR._enrich_response,
        "ActionResult.execute_result": cr.ActionResult.execute_result,
        "BaseResponse.serialized": BR.serialized,
        "ResponseSerializer.__init__": RS.__init__,
        "ResponseSerializer.serialize": RS.serialize,
        "ResponseSerializer._create_default_response": RS._create_default_response,
        "ResponseSerializer._serialize_result": RS._serialize_result,
        "ResponseSerializer._serialize": RS._serialize,
        "ResponseSerializer._default_serialize": RS._default_serialize,
        "ResponseSerializer._serialize_type_structure": RS._serialize_type_structure,
        "ResponseSerializer._serialize_structure_member": RS._serialize_structure_member,
        "ResponseSerializer.get_value": RS.get_value,
        "ResponseSerializer.get_serialized_name": RS.get_serialized_name,
        "ResponseSerializer._serialize_type_integer": RS._serialize_type_integer,
        "ResponseSerializer._serialize_type_blob": RS._serialize_type_blob,
        "ResponseSerializer._base64": RS._base64,
        "BaseJSONSerializer._serialized_result_to_response": BJ._serialized_result_to_response,
        "BaseJSONSerializer._serialize_body": BJ._serialize_body,
        "BaseJSONSerializer._get_protocol_specific_content_type": BJ._get_protocol_specific_content_type,
        "BaseJSONSerializer._serialize_type_map": BJ._serialize_type_map,
        "BaseJSONSerializer._serialize_type_list": BJ._serialize_type_list,
        "BaseJSONSerializer._serialize_type_structure": BJ._serialize_type_structure,
        "BaseJSONSerializer._serialize_type_string": BJ._serialize_type_string,
        "AttributePicker.__call__": cs.AttributePicker.__call__,
        "AttributePicker.get_possible_keys": cs.AttributePicker.get_possible_keys,
        "XFormedAttributePicker.get_possible_keys": cs.XFormedAttributePicker.get_possible_keys,
        "utils.get_value": cu.get_value,
        "utils._get_value_for_key": cu._get_value_for_key,
        "generate_receipt_handle": moto.sqs.utils.generate_receipt_handle,
        "MotoRandom.get_random_string": MotoRandom.get_random_string,
        "utils.unix_time": cu.unix_time,
        "utils.unix_time_millis": cu.unix_time_millis,
        "utils.utcnow": cu.utcnow,
        "utils.utcfromtimestamp": cu.utcfromtimestamp,
    }


# ============================================================================ request path
# PATCH 8-14: per-request costs outside the SQS model (werkzeug -> moto dispatch ->
# response). Built before anything is applied; applied together with PATCH 1-7.


@functools.lru_cache(maxsize=16)
def _random_char_tables(pool: str) -> tuple[bytes, bytes]:
    # byte -> pool[byte >> shift] where that index is in range; the others are deleted
    shift = 8 - len(pool).bit_length()
    table = bytes(ord(pool[b >> shift]) if (b >> shift) < len(pool) else 0 for b in range(256))
    delete = bytes(b for b in range(256) if (b >> shift) >= len(pool))
    return table, delete


def _random_chars(rng, pool: str, length: int) -> str:
    """== "".join(rng.choice(pool) for _ in range(length)): same draws, same result.

    CPython's Random.choice(pool) is pool[_randbelow(len(pool))], and _randbelow
    draws getrandbits(k) (k = len(pool).bit_length()) until the value is < len(pool);
    each getrandbits(k <= 32) consumes one 32-bit Mersenne Twister word and keeps its
    top k bits. getrandbits(32 * n) consumes the next n words, the first one in the
    lowest 32 bits, so in its little-endian bytes the top bits of word i are in byte
    4i+3: one slice and one bytes.translate (C loops) pick and reject as the
    one-by-one loop would. Asking for as many words as characters are still missing
    never consumes a word the loop would not have (every character takes at least
    one), so the generator ends in the same state: a seeded moto (moto-api seed)
    still yields the same receipt handles and request ids.
    """
    if not pool or len(pool) > 255 or not pool.isascii():
        return "".join(rng.choice(pool) for _ in range(length))
    table, delete = _random_char_tables(pool)
    out = b""
    while len(out) < length:
        missing = length - len(out)
        out += rng.getrandbits(32 * missing).to_bytes(4 * missing, "little")[3::4].translate(table, delete)
    return out.decode("ascii")


def _random_chars_self_test(random_cls) -> str | None:
    """None if _random_chars matches rng.choice draw for draw on this Python."""
    import random

    if random_cls._randbelow is not random.Random._randbelow_with_getrandbits:
        return "MotoRandom no longer draws through Random._randbelow_with_getrandbits"
    for seed in range(5):
        for pool in (string.ascii_lowercase, string.ascii_letters + string.digits, string.ascii_letters, "x"):
            for length in (0, 1, 7, 52, 185):
                a, b = random_cls(seed), random_cls(seed)
                if "".join(a.choice(pool) for _ in range(length)) != _random_chars(b, pool, length):
                    return f"random strings differ (seed {seed}, pool {pool!r}, length {length})"
                if a.getrandbits(64) != b.getrandbits(64):
                    return "random generator state differs after a random string"
    return None


def build_request_path_patches(m) -> list:
    """The request-path patches, as (target, name, new value) assignments."""
    import base64
    import json

    import moto.core.responses as cr
    import moto.core.serialize as cs
    import moto.moto_server.werkzeug_app as wa
    from moto import settings
    from moto.moto_api._internal import mock_random
    from moto.moto_api._internal.moto_random import MotoRandom

    patches: list = []

    # ------------------------------------------ PATCH 8: backend lookup per host
    # werkzeug_app.py:120-138, called twice per request under a global lock: for a
    # signed request to "/" the host is "sqs.<region>.amazonaws.com", which is first
    # looked for in backends.list_of_moto_modules() - a generator that lists moto's
    # package directory and stat()s each of its ~200 entries (os.path.isdir) - and
    # then matched against up to ~180 URL regexes. Both are constant for the life of
    # the process, so a found backend is remembered per host string. A miss (None) is
    # not remembered: it keeps its print(). The cache is bounded.
    D = wa.DomainDispatcherApplication
    orig_backend_for_host = D.get_backend_for_host
    backend_by_host: dict = {}

    def get_backend_for_host(self, host):
        backend = backend_by_host.get(host)
        if backend is None:
            backend = orig_backend_for_host(self, host)
            if backend is not None and len(backend_by_host) < 1024:
                backend_by_host[host] = backend
        return backend

    patches.append((D, "get_backend_for_host", get_backend_for_host))

    # ------------------------ PATCH 9: per-class method list, per-action name
    # call_action (responses.py:450-453) runs inspect.getmembers() over the whole
    # response class on every request to learn its method names, and converts the
    # action name with the character loop of camelcase_to_underscores. Both answers
    # are fixed per class / per string. Rebound only in moto.core.responses.
    orig_method_names = cr.method_names_from_class
    method_names_by_class: dict = {}

    def method_names_from_class(clazz):
        names = method_names_by_class.get(clazz)
        if names is None:
            names = method_names_by_class[clazz] = orig_method_names(clazz)
        return names

    patches.append((cr, "method_names_from_class", method_names_from_class))
    patches.append((cr, "camelcase_to_underscores", functools.lru_cache(maxsize=512)(cr.camelcase_to_underscores)))

    # ----------------------------------- PATCH 10: JSON responses of SQS, compiled
    # ActionResult.execute_result (responses.py:99-118) serializes a result with
    # moto's generic ResponseSerializer: per output member, an AttributePickerContext,
    # six alias-provider objects, botocore.xform_name and a key path string, to find
    # the value in a dict whose keys are simply the member names; a receive of 10
    # messages walks ~150 members. For the SQS JSON protocol the same walk is compiled
    # once per operation: the candidate keys of each member are computed once by
    # moto's own XFormedAttributePicker (for a plain dict they depend only on the
    # shape, never on the dict's contents), and the writers below do what
    # BaseJSONSerializer/ResponseSerializer do for each shape type, in the same order,
    # so json.dumps gets an equal dict with the same key order -> the same body.
    # Anything else - an error result, a value of an unexpected type, a non-empty
    # RESPONSE_KEY_PATH_TO_TRANSFORMER, MOTO_PRETTIFY_RESPONSES - raises Unsupported
    # and goes to moto's serializer from scratch (nothing is shared).
    JSONSerializer = cs.JSONSerializer
    RS = cs.ResponseSerializer
    # The methods JSONSerializer resolves must be the ones emulated (their sources are
    # hashed above); boolean has no method there -> written as is.
    for type_name, impl in (
        ("structure", cs.BaseJSONSerializer._serialize_type_structure),
        ("list", cs.BaseJSONSerializer._serialize_type_list),
        ("map", cs.BaseJSONSerializer._serialize_type_map),
        ("string", cs.BaseJSONSerializer._serialize_type_string),
        ("integer", RS._serialize_type_integer),
        ("long", RS._serialize_type_integer),
        ("blob", RS._serialize_type_blob),
        ("boolean", None),
    ):
        if getattr(JSONSerializer, f"_serialize_type_{type_name}", None) is not impl:
            raise RuntimeError(f"JSONSerializer._serialize_type_{type_name} is not moto 5.2.5's")
    if (JSONSerializer._base64, JSONSerializer._serialize_body) != (RS._base64, cs.BaseJSONSerializer._serialize_body):
        raise RuntimeError("JSONSerializer._base64/_serialize_body is not moto 5.2.5's")

    class Unsupported(Exception):
        pass

    NO_NAME = object()
    picker = cs.XFormedAttributePicker()

    def candidate_keys(key, shape):
        # AttributePicker.__call__ on a dict: the first of these keys present wins.
        context = cs.AttributePickerContext(obj={}, key=key, shape=shape)
        keys = tuple(picker.get_possible_keys(context))
        if any("." in k for k in keys):  # get_value would walk a path
            raise Unsupported(key)
        return keys

    def writer_for(shape, depth=0):
        """fn(target, value, key) doing what ResponseSerializer._serialize does."""
        if depth > 32:  # a recursive shape: leave it to moto
            raise Unsupported(shape.name)
        fixed_name = shape.serialization.get("name", NO_NAME)  # get_serialized_name
        type_name = shape.type_name

        if type_name == "structure":
            if shape.is_document_type:

                def write_document(target, value, key):
                    target[key] = value

                return write_document
            members = []
            for member_key, member_shape in shape.members.items():
                member_shape.parent = shape  # as _serialize_type_structure does
                keys = candidate_keys(member_key, member_shape)
                members.append((member_key, keys, writer_for(member_shape, depth + 1)))

            def write_structure(target, value, key):
                if value is None:
                    return
                if type(value) is not dict:
                    raise Unsupported(type(value))
                wrapper = {} if key else target
                for member_key, keys, write in members:
                    member_value = None
                    for k in keys:
                        if k in value:
                            member_value = value[k]
                            break
                    if member_value is not None:
                        write(wrapper, member_value, member_key)
                if key:
                    target[key if fixed_name is NO_NAME else fixed_name] = wrapper

            return write_structure

        if type_name == "list":
            item_key = shape.member.name
            write_item = writer_for(shape.member, depth + 1)

            def write_list(target, value, key):
                if type(value) is not list:
                    raise Unsupported(type(value))
                items = []
                for item in value:
                    wrapper: dict = {}
                    write_item(wrapper, item, item_key)
                    items.append(wrapper[item_key] if item_key in wrapper else item)
                target[key if fixed_name is NO_NAME else fixed_name] = items

            return write_list

        if type_name == "map":
            write_value = writer_for(shape.value, depth + 1)

            def write_map(target, value, key):
                if type(value) is not dict:
                    raise Unsupported(type(value))
                map_obj: dict = {}
                target[key if fixed_name is NO_NAME else fixed_name] = map_obj
                for sub_key, sub_value in value.items():
                    if type(sub_key) is not str:
                        raise Unsupported(type(sub_key))
                    write_value(map_obj, sub_value, sub_key)

            return write_map

        if type_name == "string":

            def write_string(target, value, key):
                if type(value) is int:
                    value = str(value)
                elif type(value) is not str:  # Enum, None-likes, ...: moto's rules
                    raise Unsupported(type(value))
                target[key if fixed_name is NO_NAME else fixed_name] = value

            return write_string

        exact_type = {"integer": int, "long": int, "boolean": bool}.get(type_name)
        if exact_type is not None:

            def write_exact(target, value, key):
                if type(value) is not exact_type:
                    raise Unsupported(type(value))
                target[key if fixed_name is NO_NAME else fixed_name] = value

            return write_exact

        if type_name == "blob":

            def write_blob(target, value, key):
                if type(value) is str:
                    value = value.encode("utf-8")
                elif type(value) is not bytes:
                    raise Unsupported(type(value))
                target[key if fixed_name is NO_NAME else fixed_name] = base64.b64encode(value).strip().decode("utf-8")

            return write_blob

        raise Unsupported(type_name)  # timestamp, float, ...: not in SQS's outputs

    def compile_operation(operation_model):
        if operation_model.has_event_stream_output:
            return None
        # _create_default_response / _serialized_result_to_response, per operation
        status_code = operation_model.http.get("responseCode", RS.DEFAULT_RESPONSE_CODE)
        content_type = JSONSerializer(operation_model)._get_protocol_specific_content_type()
        output_shape = operation_model.output_shape
        try:
            write = writer_for(output_shape) if output_shape is not None else None
        except Unsupported:
            return None

        def serialize(result):
            if isinstance(result, Exception):  # errors: moto's serializer
                raise Unsupported(type(result))
            serialized: dict = {}
            if write is not None:
                write(serialized, result, "")
            return status_code, {"Content-Type": content_type}, json.dumps(serialized, indent=None)

        return serialize

    compiled: dict = {}  # id(operation model) -> (operation model, serialize or None)
    orig_execute_result = cr.ActionResult.execute_result

    def execute_result(self, context):
        if (
            context.serializer_class is JSONSerializer
            and context.service_model.service_name == "sqs"
            and not settings.PRETTIFY_RESPONSES
            and not getattr(context.response, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None)
        ):
            op = context.operation_model
            entry = compiled.get(id(op))
            if entry is None or entry[0] is not op:
                entry = compiled[id(op)] = (op, compile_operation(op))
            if entry[1] is not None:
                try:
                    return entry[1](self.result)
                except Unsupported:
                    pass
        return orig_execute_result(self, context)

    patches.append((cr.ActionResult, "execute_result", execute_result))

    # ------------------------------------- PATCH 11: request id into XML bodies
    # _enrich_response (responses.py:497-512) runs a look-behind regex over every
    # response body to put the request id into <RequestId>...</RequestId>; a JSON
    # body never contains "<RequestId>", so the regex can only match when it does.
    orig_enrich = cr.BaseResponse._enrich_response

    def enrich_response(headers, body):
        if isinstance(body, str) and "<RequestId>" not in body:
            if "status" in headers:
                headers["status"] = str(headers["status"])
            cr.gen_amzn_requestid_long(headers)
            return headers, body
        return orig_enrich(headers, body)

    patches.append((cr.BaseResponse, "_enrich_response", staticmethod(enrich_response)))

    # -------------------------------------------- PATCH 12: random identifiers
    # Each received message gets a 185-letter receipt handle (sqs/utils.py:9-12) and
    # each response a 52-character request id (moto_random.py get_random_string),
    # both one rng.choice() call - three Python frames - per character: ~1,900 calls
    # for a receive of 10. _random_chars draws the same words from the same moto
    # generator and returns the same strings (see its docstring; checked at startup).
    problem = _random_chars_self_test(MotoRandom)
    if problem:
        raise RuntimeError(problem)

    def generate_receipt_handle() -> str:
        return _random_chars(mock_random, string.ascii_lowercase, 185)

    def get_random_string(self, length: int = 20, include_digits: bool = True, lower_case: bool = False) -> str:
        pool = string.ascii_letters
        if include_digits:
            pool += string.digits
        random_str = _random_chars(self, pool, length)
        return random_str.lower() if lower_case else random_str

    patches.append((m, "generate_receipt_handle", generate_receipt_handle))
    patches.append((MotoRandom, "get_random_string", get_random_string))

    # -------------------------------------------------------- PATCH 13: the clock
    # moto.core.utils.unix_time() (~17 calls per request: per message sent, received,
    # checked for retention, ...) builds two datetimes (utcnow() with a function-level
    # import, utcfromtimestamp(0)) and subtracts them. The same number from the same
    # clock: datetime.now() floors CLOCK_REALTIME to microseconds, the difference to
    # the epoch is (days, seconds, microseconds), combined with the same float
    # operations. Rebound in moto.sqs.models only (what the SQS model and PATCH 1-7
    # read); with an argument it is moto's own.
    orig_unix_time = m.unix_time

    def unix_time(dt=None) -> float:
        if dt is not None:
            return orig_unix_time(dt)
        secs, micros = divmod(time.time_ns() // 1000, 1_000_000)
        days, seconds = divmod(secs, 86400)
        return (days * 86400) + (seconds + (micros / 1e6))

    def unix_time_millis(dt=None) -> float:
        return unix_time(dt) * 1000.0

    patches.append((m, "unix_time", unix_time))
    patches.append((m, "unix_time_millis", unix_time_millis))

    # -------------------------- PATCH 14: Flask debug helper, one class not one per request
    # moto runs its Flask apps with debug=True, so Flask's Request._load_form_data
    # (on every request whose body is not multipart) calls
    # attach_enctype_error_multidict, which *creates a new class* - a subclass of
    # request.files' class, i.e. of the typing.Generic ImmutableMultiDict, whose
    # __init_subclass__ is slow - only so that request.files[key] can explain a
    # missing file. Here the subclass is made once per base class and finds its
    # request in the instance instead of in a closure; same name, same errors (only a
    # copy of request.files, which nothing in moto makes, loses the explanation).
    # Flask is not pinned, so this one is skipped alone if Flask's source differs.
    import flask.debughelpers as fdh
    import flask.wrappers

    flask_problem = None
    for name, fn in (
        ("Request._load_form_data", flask.wrappers.Request._load_form_data),
        ("attach_enctype_error_multidict", fdh.attach_enctype_error_multidict),
    ):
        if source_hash(fn) != FLASK_SOURCE_HASHES[name]:
            flask_problem = f"flask's {name} differs from the one PATCH 14 was written against"
    if flask_problem:
        warn(f"{flask_problem}; PATCH 14 skipped (the others apply)")
    else:
        request_attr = "_moto_sqs_fast_request"
        orig_attach = fdh.attach_enctype_error_multidict
        subclass_for: dict = {}

        def attach_enctype_error_multidict(request) -> None:
            oldcls = request.files.__class__
            newcls = subclass_for.get(oldcls)
            if newcls is None:

                class newcls(oldcls):  # debughelpers.py:90-100, request from the instance
                    def __getitem__(self, key):
                        try:
                            return super().__getitem__(key)
                        except KeyError as e:
                            owner = self.__dict__.get(request_attr)
                            if owner is None or key not in owner.form:
                                raise
                            raise fdh.DebugFilesKeyError(owner, key).with_traceback(e.__traceback__) from None

                newcls.__name__ = oldcls.__name__
                newcls.__module__ = oldcls.__module__
                subclass_for[oldcls] = newcls
            try:
                request.files.__dict__[request_attr] = request
            except AttributeError:  # a files class without __dict__: Flask's own helper
                return orig_attach(request)
            request.files.__class__ = newcls

        patches.append((fdh, "attach_enctype_error_multidict", attach_enctype_error_multidict))

    return patches
