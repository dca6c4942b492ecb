"""The labeling config, reduced to what segmentation needs: one ``Target`` per
``<TimeSeriesLabels>`` control and the ``<TimeSeries>`` object it labels.

label-studio-sdk's ``LabelInterface`` validates the config and finds controls,
objects and labels; the XML itself gives what the SDK does not expose (channels,
also inside ``<MultiChannel>`` and nested ``<View>``, time column, time format,
separator).
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass

from segmenter.errors import LabelConfigError


@dataclass(frozen=True)
class Target:
    """One control/object pair: what to predict, on which data, read how."""

    from_name: str
    to_name: str
    data_key: str
    value_type: str
    labels: tuple[str, ...]
    channels: tuple[str, ...]
    time_column: str | None
    time_format: str | None
    sep: str

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names by index: 0 is background, then the labels in config order."""
        return ("__background__", *self.labels)

    def signature(self) -> str:
        """A hash of everything a trained model depends on: labels, channels, time handling."""
        payload = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _strip_dollar(value: str) -> str:
    return value[1:] if value.startswith("$") else value


def _channels(ts: ET.Element) -> tuple[str, ...]:
    columns = []
    for node in ts.iter("Channel"):
        column = node.get("column")
        if column is None or column.strip() == "":
            raise LabelConfigError(f"<Channel> inside <TimeSeries name={ts.get('name')!r}> has no column")
        columns.append(column.strip().lower())
    if not columns:
        raise LabelConfigError(f"<TimeSeries name={ts.get('name')!r}> has no <Channel>")
    return tuple(dict.fromkeys(columns))


def _labels(control: ET.Element) -> tuple[str, ...]:
    labels = [node.get("value") for node in control.iter("Label")]
    labels = [label for label in labels if label]
    if not labels:
        raise LabelConfigError(f"<TimeSeriesLabels name={control.get('name')!r}> has no <Label>")
    return tuple(dict.fromkeys(labels))


def _validate_with_sdk(xml: str) -> None:
    """Let label-studio-sdk reject what Label Studio itself would reject."""
    from label_studio_sdk.label_interface import LabelInterface

    try:
        LabelInterface(xml)
    except Exception as exc:  # the SDK raises many types for a bad config
        raise LabelConfigError(f"label config rejected by label-studio-sdk: {exc}") from exc


def parse_label_config(xml: str, validate: bool = True) -> list[Target]:
    """Every TimeSeriesLabels -> TimeSeries pair of ``xml``, in document order, each once;
    ``validate``: the whole config checked by label-studio-sdk first.

    An object named again in ``toName`` (``"ts,ts"``) is left out, and so is a
    control whose name an earlier one has (regions name their control, so its
    results would mix with the first one's): either would train and predict
    the same regions again.
    """
    if not xml or not xml.strip():
        raise LabelConfigError("label config is empty")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"label config is not valid XML: {exc}") from exc
    if validate:
        _validate_with_sdk(xml)

    series = {node.get("name"): node for node in root.iter("TimeSeries") if node.get("name")}
    targets: dict[tuple[str, str], Target] = {}
    for control in root.iter("TimeSeriesLabels"):
        name = control.get("name")
        to_name = control.get("toName")
        if not name or not to_name:
            raise LabelConfigError("<TimeSeriesLabels> needs both name and toName")
        if any(from_name == name for from_name, _ in targets):
            continue
        for obj_name in dict.fromkeys(n.strip() for n in to_name.split(",")):
            ts = series.get(obj_name)
            if ts is None:
                raise LabelConfigError(
                    f"<TimeSeriesLabels name={name!r}> points to toName={obj_name!r}, "
                    "which is no <TimeSeries> of this config"
                )
            value = ts.get("value", "")
            if not value.startswith("$"):
                raise LabelConfigError(f"<TimeSeries name={obj_name!r}> needs value=\"$key\", got {value!r}")
            value_type = (ts.get("valueType") or "url").lower()
            if value_type not in ("url", "json"):
                raise LabelConfigError(f"<TimeSeries name={obj_name!r}> has unknown valueType={value_type!r}")
            time_column = ts.get("timeColumn")
            targets[name, obj_name] = Target(
                from_name=name,
                to_name=obj_name,
                data_key=_strip_dollar(value),
                value_type=value_type,
                labels=_labels(control),
                channels=_channels(ts),
                time_column=time_column.strip().lower() if time_column and time_column.strip() else None,
                time_format=ts.get("timeFormat") or None,
                sep=ts.get("sep") or ",",
            )
    if not targets:
        raise LabelConfigError(
            "label config has no <TimeSeriesLabels> control pointing to a <TimeSeries> object"
        )
    return list(targets.values())
