// A ball circling a post over a checkered floor: one turn as clock runs from
// 0 to 1. Rendered by distren's POV-Ray backend; see orbit.ini.
#version 3.7;
#include "colors.inc"
global_settings { assumed_gamma 1.0 }
camera { location <0, 3, -6> look_at <0, 0.6, 0> angle 50 }
light_source { <5, 8, -4> color rgb 1 }
light_source { <-6, 4, -2> color rgb 0.3 shadowless }
sky_sphere { pigment { gradient y color_map { [0 rgb <0.75, 0.85, 1>] [1 rgb <0.25, 0.4, 0.8>] } } }
plane { y, 0 pigment { checker color rgb 0.15 color rgb 0.85 scale 0.75 } finish { reflection 0.08 } }
cylinder { <0, 0, 0>, <0, 1.6, 0>, 0.18 pigment { color Gold } finish { phong 0.6 metallic } }
#declare A = clock * 2 * pi;
sphere { <2.2 * cos(A), 0.55 + 0.35 * abs(sin(2 * A)), 2.2 * sin(A)>, 0.55
  pigment { color rgb <1, 0.35, 0.15> } finish { phong 0.9 phong_size 60 reflection 0.1 } }
