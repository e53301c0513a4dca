// The 3D view: a depth map as a relief surface or a point cloud, coloured by the photo or by the
// depth colours, with orbit controls. Nearness (larger inverse depth, or smaller metres for a
// metric model) becomes height above the image plane.
import * as THREE from "three";
import { OrbitControls } from "three/addons-orbit";

const MAX_SURFACE_CELLS = 320;   // grid cells along the longer side of the surface
const MAX_POINTS = 250000;       // points in the cloud

export class DepthView {
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(window.devicePixelRatio || 1);
    this.renderer.setClearColor(0x101216);
    container.appendChild(this.renderer.domElement);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(45, 1, 0.01, 100);
    this.camera.position.set(0, -0.72, 1.12);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.enableDamping = true;
    this.controls.addEventListener("change", () => this.render());
    this.object = null;
    this.data = null;
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
    const loop = () => { if (this.controls.update()) this.render(); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  }

  resize() {
    const w = this.container.clientWidth || 1, h = this.container.clientHeight || 1;
    this.renderer.setSize(w, h);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() { this.renderer.render(this.scene, this.camera); }

  // depth: Float32Array (h*w, row-major); photo, colours: canvases or images of the same aspect
  show({ depth, h, w, metric, photo, colours, mode, texture, relief }, keepCamera) {
    this.data = { depth, h, w, metric, photo, colours };
    this.update({ mode, texture, relief }, keepCamera);
  }

  update({ mode, texture, relief }, keepCamera = true) {
    if (!this.data) return;
    if (this.object) {
      this.scene.remove(this.object);
      this.object.geometry.dispose();
      this.object.material.map?.dispose();
      this.object.material.dispose();
    }
    const { depth, h, w, metric, photo, colours } = this.data;
    const source = texture === "depth" && colours ? colours : photo;
    const near = nearness(depth, metric);
    const height = (relief / 100) * 0.6;
    this.object = mode === "points"
      ? pointCloud(near, h, w, height, source)
      : surface(near, h, w, height, source);
    this.scene.add(this.object);
    if (!keepCamera) {
      this.camera.position.set(0, -0.72, 1.12);
      this.controls.target.set(0, 0, 0);
    }
    this.controls.update();
    this.render();
  }

  snapshot() {
    this.render();
    return new Promise((resolve) => this.renderer.domElement.toBlob(resolve, "image/png"));
  }
}

// 0 (far) .. 1 (near), robust to outliers: the 1st..99th percentile range of a sample.
function nearness(depth, metric) {
  const step = Math.max(1, Math.floor(depth.length / 20000));
  const sample = [];
  for (let i = 0; i < depth.length; i += step) if (Number.isFinite(depth[i])) sample.push(depth[i]);
  sample.sort((a, b) => a - b);
  const lo = sample[Math.floor(sample.length * 0.01)] ?? 0;
  const hi = sample[Math.floor(sample.length * 0.99)] ?? 1;
  const span = hi - lo || 1;
  const out = new Float32Array(depth.length);
  for (let i = 0; i < depth.length; i++) {
    let t = (depth[i] - lo) / span;
    t = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
    out[i] = metric ? 1 - t : t;   // metres: nearer is smaller
  }
  return out;
}

function planeSize(h, w) {
  return w >= h ? [1, h / w] : [w / h, 1];
}

function sampleAt(near, h, w, u, v) {
  const x = Math.min(w - 1, Math.round(u * (w - 1))), y = Math.min(h - 1, Math.round(v * (h - 1)));
  return near[y * w + x];
}

function textureOf(source) {
  const t = new THREE.CanvasTexture(source);
  t.colorSpace = THREE.SRGBColorSpace;
  t.needsUpdate = true;
  return t;
}

function surface(near, h, w, height, source) {
  const [pw, ph] = planeSize(h, w);
  const scale = MAX_SURFACE_CELLS / Math.max(h, w);
  const nx = Math.max(2, Math.round(w * Math.min(1, scale))), ny = Math.max(2, Math.round(h * Math.min(1, scale)));
  const geometry = new THREE.PlaneGeometry(pw, ph, nx, ny);
  const pos = geometry.attributes.position, uv = geometry.attributes.uv;
  for (let i = 0; i < pos.count; i++) {
    pos.setZ(i, sampleAt(near, h, w, uv.getX(i), 1 - uv.getY(i)) * height);
  }
  geometry.computeVertexNormals();
  const material = new THREE.MeshBasicMaterial({ map: textureOf(source), side: THREE.DoubleSide });
  return new THREE.Mesh(geometry, material);
}

function pointCloud(near, h, w, height, source) {
  const [pw, ph] = planeSize(h, w);
  const step = Math.max(1, Math.ceil(Math.sqrt((h * w) / MAX_POINTS)));
  const pixels = pixelsOf(source, w, h);
  const positions = [], colors = [];
  for (let y = 0; y < h; y += step) {
    for (let x = 0; x < w; x += step) {
      const i = y * w + x;
      positions.push((x / (w - 1 || 1) - 0.5) * pw, (0.5 - y / (h - 1 || 1)) * ph, near[i] * height);
      colors.push(pixels[4 * i] / 255, pixels[4 * i + 1] / 255, pixels[4 * i + 2] / 255);
    }
  }
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.Float32BufferAttribute(positions, 3));
  geometry.setAttribute("color", new THREE.Float32BufferAttribute(colors, 3));
  const size = 1.6 * step * Math.max(pw / w, ph / h);
  const material = new THREE.PointsMaterial({ size, vertexColors: true, sizeAttenuation: true });
  return new THREE.Points(geometry, material);
}

// The RGBA pixels of an image or canvas at (w, h).
function pixelsOf(source, w, h) {
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(source, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h).data;
}
