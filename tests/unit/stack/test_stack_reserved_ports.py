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


def test_the_services_port_block_is_reserved_with_the_stacks_ports(
    stack_module: ModuleType,
) -> None:
    # market_feeds' 58014 was taken as a client's source port just before it bound it (CI)
    ports = {59092, *stack_module.SERVICE_PORT_BLOCK}
    value = stack_module.reserved_ports_value("", ports, (32768, 60999))
    reserved = {int(p) for p in value.split(",")}
    assert {58001, 58014, 58016, 58025, 58040, 59092} <= reserved
