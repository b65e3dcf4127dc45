"""The prose's numbers: the ``{eval}`` role, rendered from the page's own glued outputs.

The chapters write a computed number as ``{eval}`glued("name:.2f")```: JupyterLab (jupyterlab-myst)
shows the text that ``book.py execute`` stores with the role in the cell's metadata, and this role,
which replaces MyST-NB's kernel-evaluating one, renders the same expression in the HTML book from
the value the page glued (``dsc_utils.glue``) when the build executed it, exactly as MyST-NB's
``{glue:text}`name:.2f``` would. Any other expression is a build warning, so a build with -W fails.
"""
from __future__ import annotations

import re

from myst_nb.ext.glue.roles import PasteTextRole
from myst_nb.ext.glue.utils import glue_warning

GLUED = re.compile(r"""^glued\((["'])([^"']+)\1\)$""")


class GluedEvalRole(PasteTextRole):
    """``{eval}`glued("key")``` renders as ``{glue:text}`key```."""

    def run(self):
        match = GLUED.match(self.text.strip())
        if match is None:
            return [], [glue_warning(f"the book's {{eval}} role takes glued(\"name[:format]\"), "
                                     f"got {self.text!r}", self.document, self.line)]
        self.text = match.group(2)
        return super().run()


def setup(app):
    app.add_role("eval", GluedEvalRole(), override=True)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
