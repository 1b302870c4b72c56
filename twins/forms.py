"""Dashboard forms of the twins app (the no-JavaScript path of the twin pages)."""

from __future__ import annotations

from django import forms

from twins.services import NAME_MAX_LENGTH


class TwinNameForm(forms.Form):
    name = forms.CharField(
        max_length=NAME_MAX_LENGTH,
        label="Name",
        widget=forms.TextInput(attrs={"placeholder": "e.g. Me, summer 2026", "autocomplete": "off"}),
    )
