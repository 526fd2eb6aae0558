"""What kind of thing an ImageNet class is, from its WordNet id and name."""

from __future__ import annotations

import pytest

from cats_dogs_other.train.kinds import kind_of, parse_wnid


@pytest.mark.parametrize(
    ("stem", "kind"),
    [
        ("n01443537_goldfish", "animals"),
        ("n02114367_timber_wolf", "animals"),
        ("n04285008_sports_car", "vehicles"),
        ("n03100240_convertible", "vehicles"),
        ("n02837789_bikini", "people"),
        ("n09835506_ballplayer", "people"),
        ("n07873807_pizza", "food"),
        ("n09332890_lakeside", "scenes"),
        ("n03028079_church", "scenes"),
        ("n06596364_comic_book", "drawings"),
        ("n07248320_book_jacket", "drawings"),
        ("n11939491_daisy", "plants"),
        ("n03000684_chain_saw", "objects"),
        ("n02672831_accordion", "objects"),
        ("n02655020_puffer", "animals"),
    ],
)
def test_kinds_come_from_the_wordnet_id_and_name(stem: str, kind: str) -> None:
    parsed = parse_wnid(stem)
    assert parsed is not None
    assert kind_of(*parsed) == kind


def test_file_names_without_a_wordnet_id_have_no_kind() -> None:
    assert parse_wnid("Cat12") is None and parse_wnid("cat_01") is None
