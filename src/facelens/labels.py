"""Label vocabularies shared by the data readers, the training code and the runtime.

The order of each tuple is the order of the corresponding model output.
"""

from __future__ import annotations

GENDERS: tuple[str, ...] = ("male", "female")
"""Gender labels; index 0 is male, 1 female (UTKFace's coding)."""

RACES: tuple[str, ...] = ("white", "black", "asian", "indian", "other")
"""The five UTKFace ethnicity classes, in UTKFace's coding order."""

CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
"""The 40 CelebA attribute names, in the order of ``list_attr_celeba.txt``."""

AGE_GROUP_SCHEMES: dict[str, tuple[tuple[int, int], ...]] = {
    # Adience's eight groups. Ages that fall between two groups go to the nearest one (see age_group()).
    "adience": ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100)),
    # Twelve contiguous groups over UTKFace's 0-116 range.
    "utkface": (
        (0, 2), (3, 9), (10, 14), (15, 19), (20, 25), (26, 30), (31, 35), (36, 45), (46, 55), (56, 65),
        (66, 80), (81, 116),
    ),
}  # fmt: skip
"""Age-group schemes: name -> ordered (low, high) inclusive year ranges."""


def age_group_label(lo: int, hi: int) -> str:
    """Format an age range as a group label such as ``"25-32"`` (``"60+"`` for the open top group).

    Args:
        lo: Lowest age of the group, inclusive.
        hi: Highest age of the group, inclusive.

    Returns:
        The label.

    """
    return f"{lo}+" if hi >= 100 else f"{lo}-{hi}"


def age_group(age: float, scheme: str) -> int:
    """Index of the group of ``scheme`` that an age falls in; gaps between groups go to the nearest group.

    Args:
        age: Age in years.
        scheme: A key of :data:`AGE_GROUP_SCHEMES`.

    Returns:
        Index into ``AGE_GROUP_SCHEMES[scheme]``.

    Raises:
        KeyError: If the scheme is unknown.

    """
    return nearest_group(age, AGE_GROUP_SCHEMES[scheme])


def nearest_group(age: float, groups: tuple[tuple[int, int], ...] | list[list[int]]) -> int:
    """Index of the (low, high) inclusive range holding ``age``; between ranges, the nearest one (ties: lower).

    A range ``(lo, hi)`` holds ages from ``lo`` up to (not including) ``hi + 1``, so 32.7 is in ``(25, 32)``.
    Used by training, evaluation and the runtime alike.
    """
    best, best_dist = 0, float("inf")
    for i, (lo, hi) in enumerate(groups):
        if lo <= age <= hi + 0.999:
            return i
        dist = lo - age if age < lo else age - hi
        if dist < best_dist:
            best, best_dist = i, dist
    return best
