"""{% field_input field %}: a form field's widget with aria-describedby naming the help text and error
elements the shared form template actually renders, and aria-invalid when the field has errors."""
from django import template
from django.forms import BoundField

register = template.Library()


def field_describedby(field: BoundField) -> str:
    ids = []
    if field.help_text:
        ids.append(f"{field.auto_id}_helptext")
    if field.errors:
        ids.append(f"{field.auto_id}_error")
    return " ".join(ids)


@register.simple_tag
def field_input(field: BoundField):
    attrs = {}
    describedby = field_describedby(field)
    # Always set, so Django does not add its own reference to an element we might not render.
    attrs["aria-describedby"] = describedby or None
    if field.errors:
        attrs["aria-invalid"] = "true"
    return field.as_widget(attrs={k: v for k, v in attrs.items() if v is not None})
