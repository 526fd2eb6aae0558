"""What kind of thing an ImageNet class is (from its WordNet id and name, never its pictures),
to report "Other" accuracy by kind: ids below n02666196 (abacus, the first artefact) are animals;
then the named lists (kinds the ids do not separate); then the id's first digits."""

from __future__ import annotations

import re

NAMED = {
    "people": """ballplayer groom scuba_diver abaya academic_gown bikini brassiere bulletproof_vest
    cardigan cloak fur_coat gown hoopskirt jean jersey kimono lab_coat maillot military_uniform
    miniskirt overskirt pajama poncho sarong suit sweatshirt swimming_trunks trench_coat vestment
    wig mortarboard cowboy_hat bearskin pickelhaube bathing_cap shower_cap sombrero""",
    "vehicles": """aircraft_carrier airliner airship ambulance amphibian beach_wagon
    bicycle-built-for-two bobsled cab canoe catamaran container_ship convertible dogsled
    electric_locomotive fire_engine fireboat forklift freight_car garbage_truck go-kart golfcart
    gondola harvester horse_cart jeep jinrikisha lifeboat limousine liner minibus minivan model_t
    moped motor_scooter mountain_bike moving_van oxcart passenger_car pickup police_van racer
    recreational_vehicle schooner school_bus snowmobile snowplow space_shuttle speedboat
    sports_car steam_locomotive streetcar submarine tank tow_truck tractor trailer_truck
    tricycle trimaran trolleybus unicycle warplane wreck yawl""",
    "drawings": """comic_book book_jacket crossword_puzzle web_site menu jigsaw_puzzle
    street_sign""",
    "scenes": """alp bubble cliff coral_reef geyser lakeside promontory sandbar seashore valley
    volcano bakery barbershop barn boathouse bookshop butcher_shop castle church cinema
    cliff_dwelling confectionery dam dock greenhouse grocery_store library lumbermill monastery
    mosque palace planetarium prison restaurant shoe_shop tobacco_shop toyshop triumphal_arch
    steel_arch_bridge suspension_bridge viaduct megalith stone_wall yurt thatch breakwater
    patio pier fountain home_theater""",
}
BY_PREFIX = {7: "food", 9: "scenes", 10: "people", 11: "plants", 12: "plants", 13: "plants"}
_WNID = re.compile(r"^(n\d{8})[_\-\s]?(.*)$")


def parse_wnid(stem: str) -> tuple[str, str] | None:
    """``("n01530575", "brambling")`` from a file stem like ``n01530575_brambling``."""
    match = _WNID.match(stem)
    return (match.group(1), match.group(2)) if match else None


def kind_of(wnid: str, name: str) -> str:
    if int(wnid[1:]) < 2666196:  # n02666196 abacus
        return "animals"
    key = name.strip().replace(" ", "_").casefold()
    named = (kind for kind, names in NAMED.items() if key in names.split())
    return next(named, BY_PREFIX.get(int(wnid[1:3]), "objects"))
