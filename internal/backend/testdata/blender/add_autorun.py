"""Add a text block that Blender runs when the file loads, unless -Y is given.

blender -b IN.blend -Y --python add_autorun.py -- OUT.blend

The text writes the file autorun-ran into the working directory: a render
that leaves it there ran a script from the .blend file.
"""

import os
import sys

import bpy

out = os.path.abspath(sys.argv[sys.argv.index("--") + 1])
text = bpy.data.texts.new("autorun.py")
text.write("open('autorun-ran', 'w').write('a script of the .blend file ran')\n")
text.use_module = True  # "Register": run when the file loads, if allowed
bpy.ops.wm.save_as_mainfile(filepath=out, compress=True)
