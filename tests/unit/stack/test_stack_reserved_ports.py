"""deploy/local/stack.py keeps its ports out of the kernel's ephemeral range (no stack needed)."""

from __future__ import annotations

from types import ModuleType


def test_ports_inside_the_ephemeral_range_are_added_to_the_kernels_list(
    stack_module: ModuleType,
) -> None:
    value = stack_module.reserved_ports_value(
        "8080,59000-59010", [59092, 55432, 62150, 1234], (32768, 60999)
    )
    assert value == "8080,59000-59010,55432,59092"  # 62150 and 1234 are outside the range


def test_nothing_to_write_when_every_port_is_reserved_or_outside(stack_module: ModuleType) -> None:
    assert (
        stack_module.reserved_ports_value(
            "55432,59090-59095", [59092, 55432, 61000], (32768, 60999)
        )
        == ""
    )
    assert stack_module.reserved_ports_value("", [], (32768, 60999)) == ""


def test_up_reserves_the_stack_ports_before_starting_parts(stack_module: ModuleType) -> None:
    import inspect

    up = inspect.getsource(stack_module.cmd_up)
    assert up.index("reserve_stack_ports(stack)") < up.index("def launch(")
