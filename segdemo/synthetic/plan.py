"""The street plan: lanes, the two sides (curb, parking, verge, sidewalk, buildings) and the tram line.

A plan is data, drawn once from the scene's generator before anything is placed or drawn; every object
family reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segdemo.synthetic.styles import DomainStyle


@dataclass
class Side:
    """One side of the street, all distances as absolute |X| in metres."""

    sign: int  # -1 left, +1 right
    road_edge: float  # the curb
    parking: bool  # a parking lane just inside the curb
    verge: float  # grass strip width between curb and sidewalk (0 = none)
    sidewalk: float
    cycle_path: bool
    building_line: float  # facades stand here (beyond the property line)
    yard_terrain: bool  # ground between property line and facades: grass instead of paving

    @property
    def walk_in(self) -> float:  # inner edge of the sidewalk
        return self.road_edge + self.verge

    @property
    def property_line(self) -> float:
        return self.road_edge + self.verge + self.sidewalk


@dataclass(frozen=True)
class StreetPlan:
    """Where the road, the lanes and the two sides are, in metres across the street (X, right positive)."""

    lane_w: float
    n_lanes: int
    lanes: list[tuple[float, int]]  # (centre X, heading: +1 our way, -1 oncoming)
    sides: dict[int, Side]  # by sign: -1 left, +1 right
    crosswalk: float | None  # depth of a zebra crossing, if any
    tram_x: float | None  # X of the tram line, if any
    cross: tuple[float, float] | None = None  # depth range (near, far) of a cross street, if any

    def crosses(self, z0: float, z1: float) -> bool:
        """Does the depth range z0..z1 overlap the cross street (where nothing stands at the roadside)?"""
        return self.cross is not None and z0 < self.cross[1] and z1 > self.cross[0]


def plan_street(rng: np.random.Generator, st: DomainStyle) -> StreetPlan:
    """Draw a street plan for one domain from ``rng``."""
    u = rng.uniform
    n_lanes = int(rng.integers(st.lanes[0], st.lanes[1] + 1))
    lane_w = u(*st.lane_width)
    # right-hand traffic: the camera drives in the right half, oncoming traffic uses the left half;
    # on one-way streets every lane goes our way and the camera may be in the left-most lane,
    # which brings the left sidewalk close (lanes are counted from the right)
    one_way = rng.random() < st.one_way
    if one_way:
        cam_lane = n_lanes - 1 if rng.random() < st.left_lane else int(rng.integers(n_lanes))
        n_right = n_lanes
    else:
        cam_lane = int(rng.integers(0, max(1, n_lanes // 2)))
        n_right = max(1, n_lanes // 2)
    right_edge = lane_w * (cam_lane + 0.5)
    left_edge = lane_w * (n_lanes - cam_lane - 0.5)
    lanes = [(right_edge - lane_w * (i + 0.5), +1 if i < n_right else -1) for i in range(n_lanes)]
    sides: dict[int, Side] = {}
    for sign, lanes_edge in ((-1, left_edge), (+1, right_edge)):
        k = 0 if sign < 0 else 1
        parking = rng.random() < st.parking[k]
        edge = lanes_edge + (2.3 if parking else 0.0)  # a parking lane widens the road
        verge = u(0.8, 2.5) if rng.random() < st.verge else 0.0
        sidewalk = u(*st.sidewalk[k])
        cycle = "cycle_path" in st.variants and sidewalk > 3.2 and rng.random() < 0.5
        setback = u(*st.building_setback)
        line = edge + verge + sidewalk + setback
        sides[sign] = Side(
            sign,
            edge,
            parking,
            verge,
            sidewalk,
            cycle,
            line,
            yard_terrain=setback > 1.5 and rng.random() < 0.5,
        )
    crosswalk = u(8.0, 45.0) if rng.random() < 0.45 else None
    tram_x: float | None = None
    if rng.random() < st.p_tram:
        # trams run on rails in the middle of the street (the lane left of the camera, or the centre)
        if n_lanes > 2 and not one_way:
            tram_x = lanes[min(n_lanes - 1, n_right)][0]  # first oncoming lane
        else:
            tram_x = (right_edge - left_edge) / 2  # middle of the street
    cross: tuple[float, float] | None = None
    if rng.random() < st.p_cross:  # an intersection: the roadside opens, the sky and the far side show
        near = u(10.0, 45.0)
        cross = (near, near + u(*st.cross_width))
        if rng.random() < 0.6:
            crosswalk = near - 3.2
    return StreetPlan(lane_w, n_lanes, lanes, sides, crosswalk, tram_x, cross)
