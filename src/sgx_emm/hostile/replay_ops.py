"""The `attack` replay op: switch an attack of the library on at a line.

    {"op": "attack", "name": "driver.skip-emodpr"}
    {"op": "attack", "name": "pte.swap", "addr": "$0", "checkpoint": "written"}
    {"op": "attack", "name": "off"}

From that line on the attack is on in the replay's enclave (one at a time: a new
one replaces the last; "off" restores honest behaviour). `addr` names the address
the attack aims at (what a victim would publish: its heap, page, destination,
table); `checkpoint` strikes at once the attacks that wait for a victim's
checkpoint ("written", "table_ready"). The line reports 0, or EINVAL for an
unknown attack name.
"""

from __future__ import annotations

import weakref
from typing import Any

from sgx_emm.hostile.base import Marks, Switch
from sgx_emm.hostile.registry import ATTACKS
from sgx_emm.replay.ops import OpContext, register_op

#: the enclave -> the attack switched on in it
_ACTIVE: weakref.WeakKeyDictionary[Any, Switch] = weakref.WeakKeyDictionary()
#: names a victim publishes; an `addr` field stands for all of them
_TARGETS = ("heap", "page", "dest", "table", "now")


def _attack(ctx: OpContext) -> None:
    name = ctx.args["name"]
    previous = _ACTIVE.pop(ctx.enclave, None)
    if previous is not None:
        previous.off()
    if name == "off":
        return
    chosen = ATTACKS.get(name)
    if chosen is None:
        ctx.result.ret = "EINVAL"
        ctx.result.detail = f"no attack {name!r}; `sgx-emm attacks --list` names them"
        return
    marks = Marks()
    addr = ctx.args.get("addr")
    if addr is not None:
        for target in _TARGETS:
            marks.publish(target, addr)
        ctx.result.target = addr
    _ACTIVE[ctx.enclave] = chosen.install(ctx.enclave, marks)  # type: ignore[arg-type]
    checkpoint = ctx.args.get("checkpoint")
    if checkpoint:
        marks.reached(checkpoint)


register_op("attack", {"name": "text", "addr": "addr=", "checkpoint": "text="}, _attack)
