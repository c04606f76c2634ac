"""Build the distren Blender example scene and save it as a .blend file.

A long box turns a quarter of a circle over frames 1-24 on a floor, lit by a
sun and seen by a fixed camera; Cycles, 4 samples, 160x90 pixels. Run:

    blender -b -Y --factory-startup --python-exit-code 1 --python examples/blender/make_scene.py -- examples/blender/scene.blend
"""

import math
import os
import sys

import bpy


def main():
    argv = sys.argv
    if "--" not in argv or len(argv) <= argv.index("--") + 1:
        sys.exit("usage: blender -b -Y --factory-startup --python make_scene.py -- OUT.blend")
    # save_as_mainfile wants an absolute path.
    out = os.path.abspath(argv[argv.index("--") + 1])

    # Start from an empty scene: the factory startup has a cube, a camera and a light.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "distren"

    # Floor.
    bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, 0))
    floor = bpy.context.active_object
    floor.name = "Floor"
    floor_mat = bpy.data.materials.new("FloorMaterial")
    floor_mat.diffuse_color = (0.55, 0.55, 0.6, 1)
    floor_mat.use_nodes = True
    floor_mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.55, 0.55, 0.6, 1)
    floor.data.materials.append(floor_mat)

    # The box (a cube stretched along X, so that its turn shows), turning 90
    # degrees about Z over the 24 frames.
    bpy.ops.mesh.primitive_cube_add(size=1, location=(0, 0, 0.5), scale=(2.4, 1, 1))
    box = bpy.context.active_object
    box.name = "Box"
    box_mat = bpy.data.materials.new("BoxMaterial")
    box_mat.diffuse_color = (0.9, 0.35, 0.1, 1)
    box_mat.use_nodes = True
    box_mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.9, 0.35, 0.1, 1)
    box.data.materials.append(box_mat)
    box.rotation_euler = (0, 0, 0)
    box.keyframe_insert(data_path="rotation_euler", frame=1)
    box.rotation_euler = (0, 0, math.radians(90))
    box.keyframe_insert(data_path="rotation_euler", frame=24)
    for fc in box.animation_data.action.fcurves:
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"

    # Sun light.
    bpy.ops.object.light_add(type="SUN", location=(4, -4, 8))
    sun = bpy.context.active_object
    sun.name = "Sun"
    sun.data.energy = 3
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))

    # Camera looking at the box.
    bpy.ops.object.camera_add(location=(5, -5, 3.5))
    cam = bpy.context.active_object
    cam.name = "Camera"
    track = cam.constraints.new("TRACK_TO")
    track.target = box
    track.track_axis = "TRACK_NEGATIVE_Z"
    track.up_axis = "UP_Y"
    scene.camera = cam

    # A grey world so the background is not black.
    world = bpy.data.worlds.new("World")
    world.color = (0.2, 0.22, 0.25)
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.2, 0.22, 0.25, 1)
    scene.world = world

    # Render settings: tiny and quick.
    scene.frame_start = 1
    scene.frame_end = 24
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x = 160
    scene.render.resolution_y = 90
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = "//frame-"

    # No scene.blend1 backup next to the file when it is rebuilt.
    bpy.context.preferences.filepaths.save_version = 0
    bpy.ops.wm.save_as_mainfile(filepath=out, compress=True)
    print("distren: saved", out)


main()
