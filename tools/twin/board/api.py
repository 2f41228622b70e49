# The board twin's API checker: refuses a name, a positional count or a keyword the way the
# ESP32 port does, from the table tools/twin/gen_api.py derives from the port's C source
# (tools/twin/esp32_api.json; its "semantics" key says what each field means).
#
# Runs under the MicroPython unix port (the twin) and under CPython (tools/twin/api.py loads
# this file), so: json only, no typing, no f-strings. The emulated checks, with the port's
# messages (MICROPY_ERROR_REPORTING_NORMAL, ports/esp32/mpconfigport.h):
#   py/objfun.c + py/argcheck.c mp_arg_check_num_sig   builtin function/constructor arg counts
#   py/argcheck.c mp_arg_parse_all                     allowed_args[] keywords and positionals
#   py/runtime.c mp_load_method                        unknown attributes
#   py/bc.c mp_setup_code_state                        the frozen Python classes (Counter, ...)
import json

_table = None


def load(path):
    """Load the table (esp32_api.json) that check() uses by default; returns it."""
    global _table
    with open(path) as f:
        _table = json.load(f)
    return _table


def check(module, cls, name, nargs=None, kwargs=None, table=None):
    """Raise what the ESP32 port raises for `module.name`, `module.cls.name` or, with name None,
    `module.cls(...)`. nargs: positional args passed (self not counted), None for an attribute
    access without a call; kwargs: the keyword names passed."""
    r = why(module, cls, name, nargs, kwargs, table)
    if r is not None:
        raise r[0](r[1])


def why(module, cls, name, nargs=None, kwargs=None, table=None):
    """None if the port accepts it, else (exception class, the port's message, explanation)."""
    t = table if table is not None else _table
    if t is None:
        raise RuntimeError("api.load(path) first")
    kws = list(kwargs or ())
    mod = t["modules"].get(module)
    if mod is None:
        return ImportError, "no module named '%s'" % module, module + " is not an ESP32 module"
    label = module
    if cls is None:
        entry = mod["members"].get(name)
        if entry is None:
            return _no_attr("module", module + "." + name)
        label = module + "." + name
    else:
        c = mod["members"].get(cls)
        if c is None:
            return _no_attr("module", module + "." + cls)
        label = module + "." + cls
        if name is None:
            if nargs is None:
                return None
            return _construct(c, nargs, kws, label)
        entry = c.get("members", {}).get(name)
        if entry is None:
            if c.get("members_unknown") or c.get("attr_slot"):
                return None  # members generated at build time or served dynamically
            return _no_attr(c["name"], label + "." + name)
        label = label + "." + name
    if nargs is None:
        return None
    return _call(entry, nargs, kws, label)


def _no_attr(owner, label):
    attr = label.split(".")[-1]
    return (
        AttributeError,
        "'%s' object has no attribute '%s'" % (owner, attr),
        label + " does not exist on the ESP32 port",
    )


def _call(e, nargs, kws, label):
    kind = e["kind"]
    if kind == "class":
        return _construct(e, nargs, kws, label)
    if kind == "constant":
        tname = {bool: "bool", int: "int", str: "str"}.get(type(e.get("value")), "NoneType")
        return TypeError, "'%s' object isn't callable" % tname, label + " is a constant"
    if kind == "object":
        return None  # an object of another type (machine.mem8, ...): not modelled here
    if e.get("python"):
        return _py_call(e, nargs, kws, label, 1)
    # A method is called bound: the C function counts self (classmethod: the class).
    n = nargs + (1 if kind in ("method", "classmethod") else 0)
    return _sig(e.get("sig"), n, kws, label) or _args(e, n, kws, label)


def _construct(c, nargs, kws, label):
    ctor = c.get("constructor")
    if ctor is None:
        return TypeError, "can't create '%s' instances" % c["name"], label + " has no make_new"
    if ctor.get("python"):
        if ctor.get("id_only_ok") and nargs == 1 and not kws:
            return None  # Counter(id): the existing instance, unchanged
        return _py_call(ctor, nargs, kws, label, 1)
    return _sig(ctor.get("sig"), nargs, kws, label) or _args(ctor, nargs, kws, label)


def _sig(sig, n, kws, label):
    """mp_arg_check_num_sig: counts are the C function's (self included for methods)."""
    if not sig:
        return None
    lo = sig["min"]
    hi = sig["max"] if sig["max"] is not None else 0xFFFF
    if kws and not sig["kw"]:
        return (
            TypeError,
            "function doesn't take keyword arguments",
            "%s takes no keywords, got %s" % (label, ", ".join(kws)),
        )
    if lo == hi:
        if n != lo:
            msg = "function takes %d positional arguments but %d were given" % (lo, n)
            return TypeError, msg, label
    elif n < lo:
        return TypeError, "function missing %d required positional arguments" % (lo - n), label
    elif n > hi:
        return TypeError, "function expected at most %d arguments, got %d" % (hi, n), label
    return None


def _args(e, n, kws, label):
    """mp_arg_parse_all over the entry's allowed_args table."""
    least = e.get("min_positional")
    if least and n < least["min"]:
        return TypeError, least["message"], label + " needs a positional id"
    if e.get("kwargs") != "parsed":
        return None
    table = e["args"]
    names = [a["name"] for a in table]
    if e.get("extra_positional") == "error":
        p = max(0, n - e["leading"])
    else:
        p = 0  # the table gets no positional args; the C code handles (or drops) them
    found = 0
    for i, a in enumerate(table):
        if i < p:
            if a["kw_only"]:
                return _extra_pos(label, names)
        elif a["name"] in kws:
            found += 1
        elif a["required"]:
            return TypeError, "'%s' argument required" % a["name"], label
    if p > len(table):
        return _extra_pos(label, names)
    if found < len(kws):
        bad = [k for k in kws if k not in names[p:]]
        why = "%s: unexpected keyword argument %s (allowed: %s)" % (
            label,
            ", ".join(["'%s'" % k for k in bad]),
            ", ".join(names) or "none",
        )
        return TypeError, "extra keyword arguments given", why
    return None


def _extra_pos(label, names):
    return (
        TypeError,
        "extra positional arguments given",
        "%s: too many positional arguments (table: %s)" % (label, ", ".join(names)),
    )


def _py_call(e, nargs, kws, label, self_n):
    """Python-level binding of a frozen method/constructor (py/bc.c messages; self counted)."""
    params = e["params"]
    pos = [p for p in params if not p["kw_only"]]
    # A constructor merged from __init__ and the method it forwards to (Counter -> _configure):
    # the counts in the message are the forwarded method's.
    off = 1 if e.get("forwards_to") else 0
    if nargs > len(pos) and not e.get("varargs"):
        msg = "function takes %d positional arguments but %d were given" % (
            len(pos) - off + self_n,
            nargs - off + self_n,
        )
        return TypeError, msg, label
    for k in kws:
        idx = [i for i, p in enumerate(params) if p["name"] == k]
        if not idx:
            if not e.get("varkw"):
                return TypeError, "unexpected keyword argument '%s'" % k, label
        elif idx[0] < nargs and not params[idx[0]]["kw_only"]:
            return TypeError, "function got multiple values for argument '%s'" % k, label
    for i, p in enumerate(pos):
        if p["required"] and i >= nargs and p["name"] not in kws:
            msg = "function missing required positional argument #%d" % (i - off + 1 + self_n)
            return TypeError, msg, label
    for p in params:
        if p["kw_only"] and p["required"] and p["name"] not in kws:
            return TypeError, "function missing required keyword argument '%s'" % p["name"], label
    return None
