"""trainmon: the Textual terminal monitor of trainkit run folders.

The package reads exactly the files trainkit writes (through :mod:`trainkit.runfolder`,
:mod:`trainkit.status`, :mod:`trainkit.runfolder.files`) and acts only through :mod:`trainkit.runfolder.control`,
:mod:`trainkit.lifecycle` and :mod:`trainkit.launcher`. ``tui.model`` is Textual-free.
"""
