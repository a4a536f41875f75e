"""The SMS and message templates of the settings, checked at start-up by every stage
that fills them: a placeholder we do not fill fails there, by the variable's name, not
at every forward or alert."""

from __future__ import annotations

from contract.errors import ConfigurationError
from contract.settings import Settings

# What an alert's templates may use, with sample values of the right types ({value:g}).
ALERT_FIELDS: dict[str, object] = {
    "type": "sms_failures",
    "scope": "campaign:x",
    "value": 1.0,
    "threshold": 1.0,
    "count": 1,
    "window_start": "",
    "window_end": "",
    "report": "",
}


def check_templates(settings: Settings) -> None:
    """Fail at start-up, by name, on a template with a placeholder we do not fill."""
    for name, template, fields in (
        (
            "recording_template",
            settings.recording_template,
            dict.fromkeys(("recording_url", "call_sid"), ""),
        ),
        (
            "transcription_template",
            settings.transcription_template,
            dict.fromkeys(("from_number", "transcription_text", "call_sid"), ""),
        ),
        ("alert_template", settings.alert_template, ALERT_FIELDS),
        ("alert_resolved_template", settings.alert_resolved_template, ALERT_FIELDS),
    ):
        try:
            template.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigurationError(
                f"SWITCHBOARD_{name.upper()}: placeholder {exc} is not one of {', '.join(fields)}"
            ) from None
