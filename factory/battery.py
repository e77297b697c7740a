"""Robot battery with exact energy accounting.

Energy drawn (kWh) = Σ distance_m × consumption_kwh_per_m (loaded or empty)
                   + base_kw × (time not charging) / 3600.
While charging the state of charge rises at ``charging_kw`` (net of the base draw, which the
charger supplies). All updates are lazy: the charge is brought up to date when asked.
"""

from __future__ import annotations

__all__ = ["Battery"]


class Battery:
    """State of charge in kWh; ``charging`` switches between drawing and charging."""

    __slots__ = ("capacity_kwh", "soc_kwh", "empty_kwh_per_m", "loaded_kwh_per_m", "base_kw",
                 "charging_kw", "charging", "last_s", "drawn_travel_kwh", "drawn_base_kwh",
                 "charged_kwh", "nominal_kwh")

    def __init__(self, capacity_kwh: float, soc_kwh: float, empty_kwh_per_m: float,
                 loaded_kwh_per_m: float, base_kw: float, charging_kw: float,
                 now: float = 0.0) -> None:
        self.capacity_kwh = capacity_kwh
        self.nominal_kwh = capacity_kwh  # as built; capacity_kwh falls with a fade
        self.soc_kwh = soc_kwh
        self.empty_kwh_per_m = empty_kwh_per_m
        self.loaded_kwh_per_m = loaded_kwh_per_m
        self.base_kw = base_kw
        self.charging_kw = charging_kw
        self.charging = False
        self.last_s = now
        self.drawn_travel_kwh = 0.0
        self.drawn_base_kwh = 0.0
        self.charged_kwh = 0.0

    @property
    def soc(self) -> float:
        """State of charge as a fraction of capacity."""
        return self.soc_kwh / self.capacity_kwh

    def advance(self, now: float) -> None:
        dt_h = (now - self.last_s) / 3600.0
        self.last_s = now
        if dt_h <= 0:
            return
        if self.charging:
            e = min(self.charging_kw * dt_h, self.capacity_kwh - self.soc_kwh)
            self.soc_kwh += e
            self.charged_kwh += e
        else:
            e = self.base_kw * dt_h
            self.soc_kwh -= e
            self.drawn_base_kwh += e

    def travel(self, now: float, distance_m: float, loaded: bool) -> float:
        """Draw the energy for ``distance_m`` metres; returns it (kWh)."""
        self.advance(now)
        e = distance_m * (self.loaded_kwh_per_m if loaded else self.empty_kwh_per_m)
        self.soc_kwh -= e
        self.drawn_travel_kwh += e
        return e

    def set_charging(self, now: float, on: bool) -> None:
        self.advance(now)
        self.charging = on

    def fade(self, now: float, fraction: float) -> None:
        """Lose ``fraction`` of the capacity and, in proportion, of the stored energy (a cell
        failure or ageing step): the state of charge as a fraction is unchanged."""
        self.advance(now)
        self.capacity_kwh *= 1.0 - fraction
        self.soc_kwh *= 1.0 - fraction

    @property
    def state_of_health(self) -> float:
        """Capacity as a fraction of the nominal capacity."""
        return self.capacity_kwh / self.nominal_kwh

    def time_to_charge_s(self, target_kwh: float) -> float:
        return max(0.0, target_kwh - self.soc_kwh) / self.charging_kw * 3600.0

    def travel_energy(self, distance_m: float, loaded: bool) -> float:
        return distance_m * (self.loaded_kwh_per_m if loaded else self.empty_kwh_per_m)
