"""Tool schemas every client reads the same way.

Clients validate with what they have: Ajv in draft-07 mode (the TypeScript SDK, so
the MCP Inspector), `jsonschema` at 2020-12 (the Python SDK), or nothing, reading
the schema only to fill in arguments. msgspec and pydantic write 2020-12 forms
that the others misread (issue 13): a `[price, size]` level as `prefixItems` with
`items: false`, which draft-07 reads as "no items at all", refused every book.
So a schema is rewritten once, when the server is built, to the intersection:

- tuples become arrays with `items`, `minItems` and `maxItems` (a level is two
  numbers; a gap's places are typed by a union);
- `$ref`s are inlined (draft-07 ignores a `$ref`'s siblings, and some clients
  resolve no references at all); our shapes are not recursive;
- an optional argument (`anyOf: [X, null]`, default null) is advertised as X:
  leaving it out is how a client says "default", and clients that fill in
  arguments from a form (the Inspector's `--tool-arg`) convert text by `type`.
"""

from typing import Any

__all__ = ["portable"]


def portable(schema: dict[str, Any], *, arguments: bool = False) -> dict[str, Any]:
    """`schema` in the forms draft-07 and 2020-12 validators agree on; with
    `arguments`, optional properties lose their `null` branch."""
    definitions = schema.get("$defs", {})
    rewritten: dict[str, Any] = _rewrite(
        {k: v for k, v in schema.items() if k != "$defs"}, definitions, ()
    )
    if arguments:
        required = set(rewritten.get("required", ()))
        properties = rewritten.get("properties", {})
        for name, prop in properties.items():
            if name not in required:
                properties[name] = _not_null(prop)
    return rewritten


def _rewrite(node: Any, definitions: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        if name in seen:
            raise ValueError(f"recursive schema {name}: cannot be inlined")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        target = _rewrite(definitions[name], definitions, (*seen, name))
        return {**target, **_rewrite(siblings, definitions, seen)}
    out = {key: _rewrite(value, definitions, seen) for key, value in node.items()}
    if "prefixItems" in out:
        out = _tuple_as_array(out)
    return out


def _tuple_as_array(node: dict[str, Any]) -> dict[str, Any]:
    """A fixed-length array of the members' types: exact for a level (two numbers);
    for a gap ([start, end, reason]) any of integer or string at each place, the
    positions left to the description (the forms that keep them differ by draft)."""
    members = node.pop("prefixItems")
    distinct = [member for i, member in enumerate(members) if member not in members[:i]]
    node.pop("items", None)  # `false`: no more items than the tuple's
    items = distinct[0] if len(distinct) == 1 else {"anyOf": distinct}
    node.update(items=items, minItems=len(members), maxItems=len(members))
    return node


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    branches = prop.get("anyOf")
    if not branches or {"type": "null"} not in branches:
        return prop
    kept = [branch for branch in branches if branch != {"type": "null"}]
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {"anyOf": kept, **rest}
