// Bus names, object paths and interfaces the rest of the world relies on (S2).
export const FURKA_NAME = 'org.ppu.Furka';
export const FURKA_PATH = '/org/ppu/Furka';
export const FURKA_IFACE = 'org.ppu.Furka1';

export const GRIMSEL_NAME = 'org.ppu.Grimsel';
export const GRIMSEL_PATH = '/org/ppu/Grimsel';
export const GRIMSEL_IFACE = 'org.ppu.Grimsel1';
/** furkad -> grimseld hand-over: shift starts and delivered files. Root only (bus policy). */
export const INTAKE_IFACE = 'org.ppu.GrimselIntake1';
