"""Colours for charts and fit badges, taken from the app's current theme.

tuitune's themes set `chart-*` and `fit-*` variables; any other theme (Textual's built-ins, a user's)
gets them derived from its primary/accent/secondary/success/warning/error colours, so charts follow
every theme. Widgets re-read these when `app.theme_changed_signal` fires.
"""

from __future__ import annotations

from textual.app import App

# key returned -> (theme variable, fallback variable of Textual's colour system)
_COLORS = {
    "loss": ("chart-loss", "primary"),
    "eval": ("chart-eval", "accent"),
    "lr": ("chart-lr", "secondary"),
    "grid": ("chart-grid", "panel"),
    "fits": ("fit-fits", "success"),
    "tight": ("fit-tight", "warning"),
    "no_fit": ("fit-no", "error"),
    "text": ("foreground", "foreground"),
    "background": ("background", "background"),
    "surface": ("surface", "surface"),
}


def theme_colors(app: App) -> dict[str, str]:
    """Map of colour role -> "#rrggbb" for the current theme.

    Roles: loss, eval, lr, grid (charts); fits, tight, no_fit (fit badges); text, muted, background,
    surface.
    """
    from textual.color import Color, ColorParseError

    variables = app.get_css_variables()
    result: dict[str, str] = {}
    for role, (name, fallback) in _COLORS.items():
        value = variables.get(name) or variables.get(fallback) or "#888888"
        try:
            result[role] = Color.parse(value).hex6
        except ColorParseError:
            result[role] = Color.parse(variables.get(fallback, "#888888")).hex6
    # muted text: the foreground 45% of the way to the background (readable on any theme)
    result["muted"] = Color.parse(result["text"]).blend(Color.parse(result["background"]), 0.45).hex6
    return result
