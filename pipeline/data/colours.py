"""The colour of every label and region, one table for the viewers' colour tables and for the pictures.

Labels take the BraTS papers' colours by role (the non-enhancing core red, oedema green, enhancing tumour yellow,
a resection cavity blue, BraTS-PED's cystic component purple), other labels matplotlib's tab10 in value order. A
region is drawn in the colour of the label it adds to the largest region inside it: WT (NCR + ED + ET) in the
oedema's green, TC (NCR + ET) in the core's red, ET in its yellow; so a picture's outlines match what 3D Slicer and
ITK-SNAP show from ``labels.ctbl``.
"""

from __future__ import annotations

from pipeline.data.labels import Description, describe, roles_by_value

#: Label colours by role (`pipeline.data.labels.Description.roles` names the role of each value).
ROLE_COLOURS: dict[str, tuple[int, int, int]] = {
    "NCR": (255, 0, 0), "NETC": (255, 0, 0), "NET": (255, 0, 0), "ED": (0, 200, 0), "SNFH": (0, 200, 0),
    "ET": (255, 255, 0), "RC": (0, 128, 255), "CC": (160, 32, 240),
}
#: Any other label, in value order: matplotlib's tab10.
OTHER_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def colour_table(scheme: str | Description) -> list[tuple[int, str, tuple[int, int, int]]]:
    """``[(value, name, (r, g, b))]`` of each label of ``scheme``, background excluded, by value."""
    desc = describe(scheme)
    roles = roles_by_value(desc)  # the one reading of roles: built-in, or a dataset.json's names or regions
    rows = []
    for i, (name, value) in enumerate(sorted(desc.labels.items(), key=lambda kv: kv[1])):
        colour = ROLE_COLOURS.get(roles.get(int(value), name)) or ROLE_COLOURS.get(name)
        rows.append((int(value), name, colour or OTHER_COLOURS[i % len(OTHER_COLOURS)]))
    return rows


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def region_colours(scheme: str | Description) -> dict[str, str]:
    """``{region: "#rrggbb"}`` of the evaluated regions of ``scheme``: a one-label region takes its label's colour;
    a larger one the colour of the label it adds to its largest region inside (ties: the one holding the
    enhancing tumour), the smallest such value first: WT -> oedema (over TC), TC -> the core (over ET)."""
    desc = describe(scheme)
    by_value = {value: rgb for value, _, rgb in colour_table(desc)}
    et = desc.roles.get("ET")
    regions = {name: set(values) for name, values in desc.evaluated.items()}
    out = {}
    for name, values in regions.items():
        inside = [v for other, v in regions.items() if other != name and v < values]
        if inside:
            largest = max(inside, key=lambda v: (len(v), et in v))
            own = sorted(values - largest)
        else:
            own = sorted(values)
        out[name] = hex_colour(by_value.get(own[0], OTHER_COLOURS[len(out) % len(OTHER_COLOURS)]))
    return out


def scheme_colours(scheme: str | None) -> dict[str, str]:
    """``{region: colour}`` of the pictures drawn from tables (box plots, training curves) under ``scheme``, the
    colours its overlays and the viewers use (`region_colours`); the BraTS region names' (``brats2024``: WT, TC,
    ET, RC) when the scheme is not known, is ``labels`` (by value: `pipeline.core.figures.region_colour`) or can no
    longer be read (an nnU-Net dataset.json moved since)."""
    from pipeline.core.errors import UserError

    if scheme and scheme not in ("auto", "labels"):
        try:
            return region_colours(scheme)
        except UserError:
            pass
    return region_colours("brats2024")
