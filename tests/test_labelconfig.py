import pytest

from segmenter.errors import LabelConfigError
from segmenter.reading.labelconfig import parse_label_config

BASIC = """<View>
  <TimeSeriesLabels name="label" toName="ts">
    <Label value="Run"/><Label value="Walk"/>
  </TimeSeriesLabels>
  <TimeSeries name="ts" valueType="url" value="$csv_url" timeColumn="Time" timeFormat="%Y-%m-%d" sep=";">
    <Channel column="SensorOne"/><Channel column="sensortwo"/>
  </TimeSeries>
</View>"""


def test_basic_target_fields():
    [t] = parse_label_config(BASIC)
    assert (t.from_name, t.to_name, t.data_key, t.value_type) == ("label", "ts", "csv_url", "url")
    assert t.labels == ("Run", "Walk")
    assert t.channels == ("sensorone", "sensortwo")
    assert t.time_column == "time"
    assert t.time_format == "%Y-%m-%d"
    assert t.sep == ";"
    assert t.classes == ("__background__", "Run", "Walk")


def test_defaults_without_time_column():
    xml = """<View><TimeSeriesLabels name="l" toName="s"><Label value="A"/></TimeSeriesLabels>
    <TimeSeries name="s" value="$ts"><Channel column="0"/></TimeSeries></View>"""
    [t] = parse_label_config(xml)
    assert t.time_column is None
    assert t.time_format is None
    assert t.sep == ","
    assert t.value_type == "url"
    assert t.channels == ("0",)


def test_multichannel_nested_views_and_two_pairs():
    xml = """<View>
      <View><TimeSeriesLabels name="a" toName="s1"><Label value="X"/></TimeSeriesLabels></View>
      <TimeSeriesLabels name="b" toName="s2"><Label value="Y"/><Label value="Z"/></TimeSeriesLabels>
      <View><TimeSeries name="s1" value="$one" valueType="json" timeColumn="t">
        <MultiChannel><Channel column="x"/><Channel column="y"/></MultiChannel></TimeSeries></View>
      <TimeSeries name="s2" value="$two"><View><Channel column="z"/></View></TimeSeries>
    </View>"""
    a, b = parse_label_config(xml)
    assert (a.from_name, a.to_name, a.data_key, a.value_type, a.channels) == ("a", "s1", "one", "json", ("x", "y"))
    assert (b.from_name, b.to_name, b.labels, b.channels) == ("b", "s2", ("Y", "Z"), ("z",))


def test_signature_changes_with_labels_and_channels():
    [t] = parse_label_config(BASIC)
    [u] = parse_label_config(BASIC.replace('<Label value="Walk"/>', '<Label value="Jog"/>'))
    [v] = parse_label_config(BASIC.replace("sensortwo", "sensor3"))
    assert len({t.signature(), u.signature(), v.signature()}) == 3
    assert t.signature() == parse_label_config(BASIC)[0].signature()


@pytest.mark.parametrize(
    "xml, message",
    [
        ("", "empty"),
        ("<View><Choices", "not valid XML"),
        ('<View><Image name="i" value="$img"/></View>', "no <TimeSeriesLabels>"),
        (
            '<View><TimeSeriesLabels name="l" toName="nope"><Label value="A"/></TimeSeriesLabels>'
            '<TimeSeries name="s" value="$x"><Channel column="a"/></TimeSeries></View>',
            "nope",
        ),
        (
            '<View><TimeSeriesLabels name="l" toName="s"><Label value="A"/></TimeSeriesLabels>'
            '<TimeSeries name="s" value="$x"></TimeSeries></View>',
            "no <Channel>",
        ),
    ],
)
def test_bad_configs_are_clear_errors(xml, message):
    with pytest.raises(LabelConfigError, match=message):
        parse_label_config(xml)


def test_captured_setup_payload_parses(payload):
    [t] = parse_label_config(payload("setup.json")["schema"])
    assert t.channels == ("sensorone", "sensortwo")
    assert t.time_column == "time"
