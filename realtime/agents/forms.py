"""Portal forms for agents and deployments: they parse and label inputs (JSON text into lists and
objects); the rules are in realtime.agents.services."""
import json

from django import forms

from accounts.models import EnvironmentKind, Provider


def _json_field_clean(value: str, *, empty, kind: type, label: str):
    if not value.strip():
        return empty
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    if not isinstance(parsed, kind):
        raise forms.ValidationError(f"Must be a JSON {label}.")
    return parsed


class AgentForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="How this agent is listed on the Agents and Deployments tabs.")
    provider = forms.ChoiceField(
        choices=Provider.choices, initial=Provider.LOCAL,
        help_text="Where sessions go: the built-in local agent, OpenAI, Inworld, or any compatible WebSocket URL.",
    )
    url = forms.CharField(
        label="URL", max_length=500, required=False,
        help_text="WebSocket URL. Blank uses the provider's default; the local agent needs none.",
    )
    model = forms.CharField(
        max_length=100, required=False, widget=forms.TextInput(attrs={"list": "models-local", "autocomplete": "off"}),
        help_text="Pick one of the provider's models from the list, or type another.",
    )
    voice = forms.CharField(
        max_length=100, required=False, widget=forms.TextInput(attrs={"list": "voices-local", "autocomplete": "off"}),
        help_text="The voice replies are spoken in. Blank: the provider's default.",
    )
    instructions = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text="The system prompt, sent in the session.update that opens every session.",
    )
    tools = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text='JSON list of {"type": "function", "name", "description", "parameters": {JSON schema}}.',
    )
    header_template = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text='JSON object of header name to value; {credential} is replaced by the credential. '
        'Example: {"Authorization": "Bearer {credential}"}.',
    )
    credential = forms.CharField(
        label="Upstream credential", required=False, strip=False, max_length=4096,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: stored encrypted and never shown again. Leave blank to keep the current one.",
    )
    clear_credential = forms.BooleanField(
        label="Remove the stored credential", required=False,
        help_text="Tick and save to forget the stored credential.",
    )
    default_in = forms.ChoiceField(
        label="Make it the default of", required=False,
        choices=[("", "No environment (leave the defaults as they are)"), *EnvironmentKind.choices],
        help_text="On saving, keys of this environment reach this agent when they name no deployment.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        provider = self.data.get("provider") or self.initial.get("provider") or Provider.LOCAL
        if provider in Provider.values:  # the lists to pick from follow the chosen provider
            self.fields["model"].widget.attrs["list"] = f"models-{provider}"
            self.fields["voice"].widget.attrs["list"] = f"voices-{provider}"

    def clean_tools(self):
        return _json_field_clean(self.cleaned_data["tools"], empty=[], kind=list, label="list")

    def clean_header_template(self):
        return _json_field_clean(self.cleaned_data["header_template"], empty={}, kind=dict, label="object")

    def service_data(self) -> dict:
        """The cleaned fields as agent_create/agent_update take them."""
        data = {key: value for key, value in self.cleaned_data.items()
                if key not in ("credential", "clear_credential", "default_in")}
        if self.cleaned_data.get("clear_credential"):
            data["credential"] = ""
        elif self.cleaned_data.get("credential"):
            data["credential"] = self.cleaned_data["credential"]
        return data

    @staticmethod
    def initial_for(agent) -> dict:
        return {
            "name": agent.name, "provider": agent.provider, "url": agent.url, "model": agent.model,
            "voice": agent.voice, "instructions": agent.instructions,
            "tools": json.dumps(agent.tools, indent=2) if agent.tools else "",
            "header_template": json.dumps(agent.header_template, indent=2) if agent.header_template else "",
        }


class DeploymentForm(forms.Form):
    name = forms.CharField(max_length=100)
    environment = forms.ChoiceField(choices=EnvironmentKind.choices, help_text="Fixed once created.")
    agent = forms.ModelChoiceField(queryset=None, empty_label=None)
    task_upstream_url = forms.CharField(label="Task upstream URL (optional)", max_length=500, required=False)
    is_default = forms.BooleanField(label="Default deployment of its environment", required=False)

    def __init__(self, *args, agents, editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = agents
        if editing:
            self.fields["environment"].disabled = True
